"""Basic-auth credentials in URLs are encrypted at rest, as signing secrets are: the column
becomes text (ciphertext is longer than a URL) and rows stored in the clear are encrypted."""

from typing import Any

from django.db import migrations

import lib.crypto

FIELDS = [('Event', 'webhook_url'), ('Delivery', 'url')]


def encrypt_url_credentials(apps: Any, schema_editor: Any) -> None:
    for model, field in FIELDS:
        lib.crypto.encrypt_url_rows(apps.get_model('deliveries', model), field)


def decrypt_url_credentials(apps: Any, schema_editor: Any) -> None:
    for model, field in FIELDS:
        lib.crypto.decrypt_url_rows(apps.get_model('deliveries', model), field)


class Migration(migrations.Migration):

    dependencies = [
        ('deliveries', '0009_point_at_moved_models'),
    ]

    operations = [
        migrations.AlterField(
            model_name='delivery',
            name='url',
            field=lib.crypto.CredentialURLField(blank=True, max_length=2048),
        ),
        migrations.AlterField(
            model_name='event',
            name='webhook_url',
            field=lib.crypto.CredentialURLField(blank=True, max_length=2048),
        ),
        migrations.RunPython(encrypt_url_credentials, decrypt_url_credentials),
    ]
