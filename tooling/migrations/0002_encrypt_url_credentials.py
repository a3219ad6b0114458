"""Basic-auth credentials in URLs are encrypted at rest, as signing secrets are: the column
becomes text (ciphertext is longer than a URL) and rows stored in the clear are encrypted."""

from typing import Any

from django.db import migrations

import lib.crypto

FIELDS = [('LoyaltyApp', 'url')]


def encrypt_url_credentials(apps: Any, schema_editor: Any) -> None:
    for model, field in FIELDS:
        lib.crypto.encrypt_url_rows(apps.get_model('tooling', model), field)


def decrypt_url_credentials(apps: Any, schema_editor: Any) -> None:
    for model, field in FIELDS:
        lib.crypto.decrypt_url_rows(apps.get_model('tooling', model), field)


class Migration(migrations.Migration):

    dependencies = [
        ('tooling', '0001_initial'),
    ]

    operations = [
        migrations.AlterField(
            model_name='loyaltyapp',
            name='url',
            field=lib.crypto.CredentialURLField(max_length=2048, verbose_name='App URL'),
        ),
        migrations.RunPython(encrypt_url_credentials, decrypt_url_credentials),
    ]
