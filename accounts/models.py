"""Merchants (tenants), the people who log in, and the credentials of the REST API."""

from __future__ import annotations

import functools
import hashlib
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.db import connection, models, transaction
from django.utils import timezone

from lib import signing
from lib.crypto import EncryptedTextField
from lib.ids import new_id


def _merchant_id() -> str:
    return new_id("mrc")


PLATFORM_MERCHANT_NAME = "Platform operator"


class MerchantQuerySet(models.QuerySet["Merchant"]):
    def tenants(self) -> MerchantQuerySet:
        """The POS platform's merchants, without the operator's own row."""
        return self.filter(is_platform=False)

    def platform(self) -> Merchant:
        """The operator's own row: its webhooks get the operational events about merchants'."""
        found = self.filter(is_platform=True).first()
        if found is None:
            found, _ = self.get_or_create(
                is_platform=True, defaults={"name": PLATFORM_MERCHANT_NAME}
            )
        return found


class Merchant(models.Model):
    public_id = models.CharField(max_length=40, unique=True, default=_merchant_id, editable=False)
    name = models.CharField(max_length=200)
    # The POS back office's own id for this merchant (the operator API looks merchants up by
    # it); NULL rather than "" when absent, so the unique constraint ignores merchants without.
    external_id = models.CharField(
        max_length=200,
        null=True,
        blank=True,
        unique=True,
        help_text="The POS platform's id for this merchant; unique.",
    )
    # The last sequence number handed to one of this merchant's events.
    event_sequence = models.BigIntegerField(default=0, editable=False)
    # Signs deliveries to one-off `webhook_url`s, which have no endpoint of their own.
    webhook_secret = EncryptedTextField(default=signing.new_secret)
    notification_email = models.EmailField(
        blank=True, help_text="Where failure warnings go; empty means every member's e-mail."
    )
    retention_days = models.PositiveIntegerField(
        null=True, blank=True, help_text="Days to keep delivery logs; empty means the default."
    )
    # Per-merchant limits that staff may raise; empty means the MERCHANT_MAX_* setting.
    max_webhooks = models.PositiveIntegerField(
        null=True, blank=True, help_text="Webhooks at most; empty means the default."
    )
    max_api_keys = models.PositiveIntegerField(
        null=True, blank=True, help_text="Active API keys at most; empty means the default."
    )
    max_oauth_clients = models.PositiveIntegerField(
        null=True, blank=True, help_text="OAuth clients at most; empty means the default."
    )
    max_inspectors = models.PositiveIntegerField(
        null=True, blank=True, help_text="Request inspectors at most; empty means the default."
    )
    max_one_off_per_hour = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Events with a one-off webhook_url per hour; empty means the default.",
    )
    # The platform operator's own row (at most one): its endpoints are the operator's
    # webhooks, which receive operational events about the merchants' endpoints.
    is_platform = models.BooleanField(default=False, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    LIMITS = ("webhooks", "api_keys", "oauth_clients", "inspectors", "one_off_per_hour")

    objects = MerchantQuerySet.as_manager()

    class Meta:
        # The table kept its name when the model moved here from the endpoints app.
        db_table = "endpoints_merchant"
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_platform"],
                condition=models.Q(is_platform=True),
                name="one_platform_merchant",
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.public_id})"

    def next_sequence(self) -> int:
        """Take the next event sequence number; call inside the transaction that stores the event.

        The UPDATE takes the row's write lock, so concurrent emitters queue up and every
        number is used once, in commit order.
        """
        table = connection.ops.quote_name(Merchant._meta.db_table)
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} SET event_sequence = event_sequence + 1 WHERE id = %s "
                "RETURNING event_sequence",
                [self.pk],
            )
            self.event_sequence = cursor.fetchone()[0]
        return self.event_sequence

    def limit(self, name: str) -> int:
        """A limit of `LIMITS`: this merchant's own value, or else the setting's default."""
        own = getattr(self, f"max_{name}")
        return own if own is not None else getattr(settings, f"MERCHANT_MAX_{name.upper()}")

    def notification_recipients(self) -> list[str]:
        if self.notification_email:
            return [self.notification_email]
        return [u.email for u in self.users.filter(is_active=True) if u.email]


class User(AbstractUser):
    """A person who logs in. Merchant users belong to one merchant; staff may belong to none."""

    merchant = models.ForeignKey(
        Merchant, null=True, blank=True, on_delete=models.CASCADE, related_name="users"
    )

    class Meta(AbstractUser.Meta):
        # The table kept its name when the model moved here from the endpoints app.
        db_table = "endpoints_user"


class Revocable:
    """A credential with a `revoked_at` field: active until revoked, revoked once."""

    revoked_at: datetime | None

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    def revoke(self) -> None:
        if self.revoked_at is None:
            self.revoked_at = timezone.now()
            self.save(update_fields=["revoked_at"])  # type: ignore[attr-defined]


class ApiKeyQuerySet(models.QuerySet["ApiKey"]):
    def active(self) -> ApiKeyQuerySet:
        return self.filter(revoked_at__isnull=True)

    def authenticate(self, raw_key: str) -> ApiKey | None:
        """The active key for a bearer token, or None. Only the hash is ever stored."""
        if not raw_key.startswith(API_KEY_PREFIX):
            return None
        key = _active_key_with_merchant(ApiKey.hash(raw_key))
        if key is not None and (
            key.last_used_at is None or timezone.now() - key.last_used_at > timedelta(minutes=1)
        ):
            # Throttled, so a busy POS does not write this row on every request.
            ApiKey.objects.filter(pk=key.pk).update(last_used_at=timezone.now())
        return key


def _active_key_with_merchant(key_hash: str) -> ApiKey | None:
    """The unrevoked key with this hash and its merchant, in one plain query.

    Every API request runs this; building it with the ORM cost several times the query.
    """
    qn = connection.ops.quote_name
    key_fields = ApiKey._meta.concrete_fields
    merchant_fields = Merchant._meta.concrete_fields
    columns = [f"k.{qn(f.column)}" for f in key_fields]
    columns += [f"m.{qn(f.column)}" for f in merchant_fields]
    sql = (
        f"SELECT {', '.join(columns)} FROM {qn(ApiKey._meta.db_table)} k "
        f"JOIN {qn(Merchant._meta.db_table)} m ON m.{qn('id')} = k.{qn('merchant_id')} "
        f"WHERE k.{qn('key_hash')} = %s AND k.{qn('revoked_at')} IS NULL"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [key_hash])
        row = cursor.fetchone()
    if row is None:
        return None
    split = len(key_fields)
    key = _from_row(ApiKey, row[:split])
    key.merchant = _from_row(Merchant, row[split:])
    return key


def _from_row(model: type[models.Model], values: Sequence[Any]) -> Any:
    """A model instance from its concrete columns, converted as the ORM would."""
    attnames, converters = _row_reader(model, connection.vendor)
    converted = []
    for value, (col, convert_all) in zip(values, converters, strict=True):
        if value is not None:
            # SQLite hands datetimes back as text; encrypted fields decrypt here.
            for convert in convert_all:
                value = convert(value, col, connection)
        converted.append(value)
    return model.from_db(connection.alias, attnames, converted)


@functools.cache
def _row_reader(model: type[models.Model], vendor: str) -> tuple[list[str], list[Any]]:
    fields = model._meta.concrete_fields
    converters = []
    for f in fields:
        col = f.get_col(model._meta.db_table)
        convert_all = connection.ops.get_db_converters(col) + f.get_db_converters(connection)
        converters.append((col, convert_all))
    return [f.attname for f in fields], converters


API_KEY_PREFIX = "whk_"


class ApiKey(Revocable, models.Model):
    """A bearer key for the REST API. Shown once at creation; stored as a SHA-256 hash."""

    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, help_text="The first characters, to tell keys apart.")
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    created_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        # The table kept its name when the model moved here from the endpoints app.
        db_table = "endpoints_apikey"
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}...)"

    @staticmethod
    def hash(raw_key: str) -> str:
        return hashlib.sha256(raw_key.encode()).hexdigest()

    @classmethod
    def issue(
        cls, merchant: Merchant, name: str, created_by: User | None = None
    ) -> tuple[ApiKey, str]:
        """Create a key; returns it with the raw key, which is never retrievable again."""
        raw = API_KEY_PREFIX + secrets.token_urlsafe(32)
        key = cls.objects.create(
            merchant=merchant,
            name=name,
            prefix=raw[:12],
            key_hash=cls.hash(raw),
            created_by=created_by,
        )
        return key, raw


class OAuthClient(models.Model):
    """A merchant's OAuth 2.0 client (client-credentials grant), as myPOS integrators use.

    django-oauth-toolkit's Application issues the tokens; this row scopes it to one
    merchant, so a token it issued reaches that merchant's data and nothing else.
    """

    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="oauth_clients")
    application = models.OneToOneField(
        settings.OAUTH2_PROVIDER_APPLICATION_MODEL,
        on_delete=models.CASCADE,
        related_name="merchant_client",
    )
    name = models.CharField(max_length=100)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    created_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        # The table kept its name when the model moved here from the endpoints app.
        db_table = "endpoints_oauthclient"
        ordering = ["-created_at", "-id"]
        verbose_name = "OAuth client"

    def __str__(self) -> str:
        return f"{self.name} ({self.client_id})"

    @property
    def client_id(self) -> str:
        return self.application.client_id

    @classmethod
    def issue(
        cls, merchant: Merchant, name: str, created_by: User | None = None
    ) -> tuple[OAuthClient, str]:
        """Create a client; returns it with the raw secret, which is stored hashed only."""
        from oauth2_provider.generators import generate_client_secret
        from oauth2_provider.models import get_application_model

        application_model = get_application_model()
        raw_secret = generate_client_secret()
        with transaction.atomic():
            application = application_model.objects.create(
                name=f"{merchant.public_id}: {name}"[:255],
                client_type=application_model.CLIENT_CONFIDENTIAL,
                authorization_grant_type=application_model.GRANT_CLIENT_CREDENTIALS,
                client_secret=raw_secret,
                hash_client_secret=True,
            )
            client = cls.objects.create(
                merchant=merchant, application=application, name=name, created_by=created_by
            )
        return client, raw_secret

    def delete_with_tokens(self) -> None:
        """Remove the client; its application and every token it issued go with it."""
        self.application.delete()


def merchant_for_oauth_token(raw_token: str) -> Merchant | None:
    """The merchant of an unexpired, unrevoked access token, or None.

    Only the token's SHA-256 checksum is stored (OAUTH2_PROVIDER's RFC 9700 storage).
    """
    from oauth2_provider.models import get_access_token_model

    checksum = hashlib.sha256(raw_token.encode()).hexdigest()
    token = (
        get_access_token_model()
        .objects.filter(token_checksum=checksum, expires__gt=timezone.now())
        .select_related("application__merchant_client__merchant")
        .first()
    )
    if token is None or token.application is None:
        return None
    client = getattr(token.application, "merchant_client", None)
    return client.merchant if client is not None else None


OPERATOR_KEY_PREFIX = "whop_"


class OperatorKeyQuerySet(models.QuerySet["OperatorKey"]):
    def authenticate(self, raw_key: str) -> OperatorKey | None:
        """The active operator key for a bearer token, or None. Only the hash is stored."""
        if not raw_key.startswith(OPERATOR_KEY_PREFIX):
            return None
        key = self.filter(key_hash=ApiKey.hash(raw_key), revoked_at__isnull=True).first()
        if key is not None and (
            key.last_used_at is None or timezone.now() - key.last_used_at > timedelta(minutes=1)
        ):
            OperatorKey.objects.filter(pk=key.pk).update(last_used_at=timezone.now())
        return key


class OperatorKey(Revocable, models.Model):
    """A bearer key of the POS platform itself: it manages merchants and acts for any one of
    them (named by a `Merchant-Id` header). Shown once at creation; stored as a SHA-256 hash.
    """

    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, help_text="The first characters, to tell keys apart.")
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = OperatorKeyQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "operator key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}...)"

    @classmethod
    def issue(cls, name: str) -> tuple[OperatorKey, str]:
        """Create a key; returns it with the raw key, which is never retrievable again."""
        raw = OPERATOR_KEY_PREFIX + secrets.token_urlsafe(32)
        key = cls.objects.create(name=name, prefix=raw[:12], key_hash=ApiKey.hash(raw))
        return key, raw


class OperatorRequestKey(models.Model):
    """An `Idempotency-Key` of the operator's `POST /api/v1/merchants`: the merchant that the
    first request with this key created, and a fingerprint of that request."""

    TTL_SECONDS = 24 * 3600

    key = models.CharField(max_length=255, unique=True)
    fingerprint = models.CharField(max_length=64)
    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.key


class PortalLink(models.Model):
    """A one-time sign-in link into one merchant's dashboard, made by the operator API.

    Only the SHA-256 of its token is stored; `used_at` is set by the one conditional UPDATE
    that redeems it, so a link signs in at most once however many tabs open it.
    """

    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="+")
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    embed = models.BooleanField(default=False)
    session_seconds = models.PositiveIntegerField()
    created_by = models.ForeignKey(
        OperatorKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        indexes = [models.Index(fields=["expires_at"], name="portal_link_expires")]

    def __str__(self) -> str:
        return f"portal link for {self.merchant_id} until {self.expires_at:%Y-%m-%d %H:%M}"
