"""Basic-auth credentials in URLs are encrypted at rest, as signing secrets are: the column
becomes text (ciphertext is longer than a URL) and rows stored in the clear are encrypted."""

from typing import Any

from django.db import migrations

import lib.crypto

FIELDS = [('Endpoint', 'url')]


def encrypt_url_credentials(apps: Any, schema_editor: Any) -> None:
    for model, field in FIELDS:
        lib.crypto.encrypt_url_rows(apps.get_model('endpoints', model), field)


def decrypt_url_credentials(apps: Any, schema_editor: Any) -> None:
    for model, field in FIELDS:
        lib.crypto.decrypt_url_rows(apps.get_model('endpoints', model), field)


class Migration(migrations.Migration):

    dependencies = [
        ('endpoints', '0011_forget_moved_models'),
    ]

    operations = [
        migrations.AlterField(
            model_name='endpoint',
            name='url',
            field=lib.crypto.CredentialURLField(max_length=2048, verbose_name='Webhook URL'),
        ),
        migrations.RunPython(encrypt_url_credentials, decrypt_url_credentials),
    ]
