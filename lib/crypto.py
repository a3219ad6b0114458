"""Secrets encrypted at rest: signing secrets never sit in the database in the clear.

The key comes from the environment (`FIELD_ENCRYPTION_KEY`, one or more comma-separated
Fernet keys; the first encrypts, all decrypt, so keys can be rotated). In local
development it is derived from SECRET_KEY.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models

PREFIX = "fernet:"


@lru_cache(maxsize=1)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    try:
        return MultiFernet([Fernet(key) for key in keys])
    except ValueError:
        raise ImproperlyConfigured(
            "FIELD_ENCRYPTION_KEY: each key must be 32 url-safe base64-encoded bytes "
            "(make one with: python -c 'from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())')"
        ) from None


def fernet() -> MultiFernet:
    return _fernet(tuple(settings.FIELD_ENCRYPTION_KEYS))


def encrypt(value: str) -> str:
    return PREFIX + fernet().encrypt(value.encode()).decode()


@lru_cache(maxsize=8192)
def _decrypt(token: str, keys: tuple[str, ...]) -> str:
    # Cached: a worker decrypts the same endpoint's secret for every delivery it sends.
    return _fernet(keys).decrypt(token.encode()).decode()


def decrypt(value: str) -> str:
    if not value.startswith(PREFIX):
        return value  # written before encryption was introduced
    try:
        return _decrypt(value[len(PREFIX) :], tuple(settings.FIELD_ENCRYPTION_KEYS))
    except InvalidToken:
        raise ImproperlyConfigured(
            "FIELD_ENCRYPTION_KEY: a stored secret cannot be decrypted with the configured "
            "key(s); add the previous key after the new one to rotate keys"
        ) from None


class EncryptedTextField(models.TextField):
    """A text column whose value is encrypted with the operator's key before it is stored."""

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        return decrypt(value) if isinstance(value, str) and value else value

    def get_prep_value(self, value: Any) -> Any:
        value = super().get_prep_value(value)
        return encrypt(value) if isinstance(value, str) and value else value


def has_credentials(url: str) -> bool:
    """Whether a URL carries `user:pass@` (or `user@`) before its host."""
    try:
        netloc = urlsplit(url).netloc
    except ValueError:
        return "@" in url  # malformed: encrypted rather than risk keeping a password readable
    return "@" in netloc


class CredentialURLField(models.CharField):
    """A URL column whose value is encrypted when it carries basic-auth credentials.

    A URL without them stays readable (the admin and the inspector find webhooks by it);
    one with them is stored whole as Fernet ciphertext, so a leaked table shows no password.
    The column is text: ciphertext is longer than the 2048 characters a URL may have.
    """

    def db_type(self, connection: Any) -> str:
        return connection.data_types["TextField"]

    def cast_db_type(self, connection: Any) -> str:
        return self.db_type(connection)

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        return decrypt(value) if isinstance(value, str) and value else value

    def get_prep_value(self, value: Any) -> Any:
        value = super().get_prep_value(value)
        if isinstance(value, str) and not value.startswith(PREFIX) and has_credentials(value):
            return encrypt(value)
        return value


def encrypt_url_rows(model: type[models.Model], field: str) -> None:
    """For a data migration: encrypt the credentials in URLs stored in the clear before.

    Args:
        model: the migration's historical model, whose `field` is a CredentialURLField.
        field: the URL field's name.
    """
    rows = (
        model._default_manager.filter(**{f"{field}__contains": "@"})
        .exclude(**{f"{field}__startswith": PREFIX})
        .values_list("pk", field)
    )
    for pk, url in rows.iterator():
        if has_credentials(url):
            # Saved through the field, which encrypts a URL with credentials.
            model._default_manager.filter(pk=pk).update(**{field: url})


def decrypt_url_rows(model: type[models.Model], field: str) -> None:
    """The reverse of `encrypt_url_rows`, for migrating back to code that stored them clear."""
    rows = model._default_manager.filter(**{f"{field}__startswith": PREFIX}).values_list(
        "pk", field
    )
    for pk, url in rows.iterator():
        plain = models.Value(url, output_field=models.TextField())
        model._default_manager.filter(pk=pk).update(**{field: plain})
