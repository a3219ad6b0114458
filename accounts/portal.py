"""Sign-in links: the POS platform signs a merchant into its dashboard from its back office.

The operator API makes a link (`issue`); opening it (`redeem`) signs the browser in as the
merchant's portal user, once, before it expires. Links and their use are logged, and both
making and opening them are rate limited (a fixed window in Redis, failing open as the
API's limiter does).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.urls import reverse
from django.utils import timezone
from redis.exceptions import RedisError

from accounts.models import Merchant, OperatorKey, PortalLink, User
from lib import redis_client

log = logging.getLogger("webhooks.portal")

MAX_LINK_MINUTES = 60
DEFAULT_LINK_MINUTES = 5


def _hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def within_rate(scope: str, limit: int, window: int) -> tuple[bool, int]:
    """Count one hit in a fixed window; returns (allowed, seconds until the window ends)."""
    now = time.time()
    bucket = int(now // window)
    key = f"webhooks:portal:{scope}:{bucket}"
    try:
        pipe = redis_client.connection().pipeline(transaction=False)
        pipe.incr(key)
        pipe.expire(key, window + 1)
        count = pipe.execute()[0]
    except RedisError as exc:
        log.warning("portal rate limiter unavailable (%s); allowing", exc)
        return True, 0
    return int(count) <= limit, max(1, int((bucket + 1) * window - now + 0.999))


def portal_user(merchant: Merchant) -> User:
    """The merchant's user that sign-in links sign in: no password, so only links reach it."""
    user, created = User.objects.get_or_create(
        username=f"portal+{merchant.public_id}",
        defaults={"merchant": merchant, "first_name": "Back office"},
    )
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    return user


def issue(
    merchant: Merchant,
    *,
    minutes: int = DEFAULT_LINK_MINUTES,
    embed: bool = False,
    session_minutes: int | None = None,
    operator: OperatorKey | None = None,
) -> tuple[PortalLink, str]:
    """Make a one-time link; returns it with its URL, which holds the only copy of the token."""
    raw = secrets.token_urlsafe(32)
    link = PortalLink.objects.create(
        merchant=merchant,
        token_hash=_hash(raw),
        expires_at=timezone.now() + timedelta(minutes=minutes),
        embed=embed,
        session_seconds=60 * (session_minutes or settings.PORTAL_SESSION_MINUTES),
        created_by=operator,
    )
    url = settings.SITE_URL.rstrip("/") + reverse("portal_sign_in", args=[raw])
    log.info(
        "portal link %s made for merchant %s by operator key %s, embed=%s, expires %s",
        link.pk,
        merchant.public_id,
        operator.prefix if operator else "-",
        embed,
        link.expires_at.isoformat(),
    )
    return link, url


@dataclass(frozen=True)
class Redeemed:
    """What opening a link came to: the link when it signs in, else why not."""

    link: PortalLink | None
    problem: str = ""  # "unknown", "used" or "expired"


def redeem(raw: str, address: str | None) -> Redeemed:
    """Use a link once: the conditional UPDATE lets exactly one opener through."""
    link = PortalLink.objects.select_related("merchant").filter(token_hash=_hash(raw)).first()
    now = timezone.now()
    if link is None:
        log.warning("portal link refused from %s: unknown or altered token", address)
        return Redeemed(None, "unknown")
    if link.used_at is not None:
        log.warning("portal link %s refused from %s: already used", link.pk, address)
        return Redeemed(None, "used")
    if link.expires_at <= now:
        log.warning("portal link %s refused from %s: expired", link.pk, address)
        return Redeemed(None, "expired")
    taken = PortalLink.objects.filter(pk=link.pk, used_at__isnull=True, expires_at__gt=now).update(
        used_at=now
    )
    if not taken:
        log.warning("portal link %s refused from %s: used at the same moment", link.pk, address)
        return Redeemed(None, "used")
    log.info(
        "portal link %s used from %s for merchant %s", link.pk, address, link.merchant.public_id
    )
    return Redeemed(link)
