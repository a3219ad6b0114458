"""Idempotent ingestion: what the events API does with `Idempotency-Key`s.

A POS that loses the answer to a POST (a dropped connection, a timeout) cannot know whether
the event was stored, so it sends it again. With a key, the retry gets the event the first
request stored, never a second one: keys are remembered per merchant for 24 hours with a
fingerprint of the request, and the same key with a different request is a conflict.

Race-safe by the database, not by a look-up: of two requests with one key that both find
it unknown, both try to store their event with the key in one transaction; the unique
(merchant, key) constraint fails the second insert, its transaction (or savepoint) rolls
back with its event and deliveries, and it looks again, finding the first one's event.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, connection
from django.utils import timezone

from accounts.models import Merchant
from deliveries.engine import emit_many
from deliveries.models import Event, IdempotencyKey
from deliveries.sql import insert_sql

# Visible ASCII: what an HTTP header carries safely, and what a UUID or a receipt number is.
KEY_PATTERN = r"^[\x21-\x7e]{1,255}$"
_KEY_RE = re.compile(KEY_PATTERN)
KEY_RULE = "1 to 255 visible ASCII characters (a UUID is a good key)"
TTL = timedelta(seconds=IdempotencyKey.TTL_SECONDS)
# Look-ups after losing a race: one is enough (the winner has committed); more is a bug.
_ATTEMPTS = 3


def is_valid_key(key: str) -> bool:
    return bool(_KEY_RE.match(key))


def fingerprint(fields: dict[str, Any]) -> str:
    """SHA-256 of the event as it would be stored, as canonical JSON.

    Canonical (sorted keys, no whitespace) and of the validated fields, so a retry that
    sends the same event with its keys in another order, or form-encoded instead of JSON,
    is still the same request.
    """
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass
class Item:
    """One event to ingest: its validated fields ("type", "data", "webhook_url") and key."""

    fields: dict[str, Any]
    key: str | None = None
    event: Event | None = None
    replayed: bool = False  # True when the key was known: `event` is the earlier one
    fingerprint: str = field(init=False)

    def __post_init__(self) -> None:
        self.fingerprint = fingerprint(self.fields) if self.key else ""


class KeyConflict(Exception):
    """Keys used in the last 24 hours with a different request: nothing was stored."""

    def __init__(self, indices: list[int]) -> None:
        super().__init__(f"idempotency keys reused with a different request: items {indices}")
        self.indices = indices


def ingest(merchant: Merchant, items: list[Item]) -> list[Item]:
    """Store the items' events in one transaction; items with a known key get its event.

    Returns:
        The items, each with its `event` (and `replayed` when it was stored earlier).

    Raises:
        KeyConflict: a key was used with a different request (nothing is stored).
        UnknownEventType: a type is no longer active (nothing is stored).
    """
    for attempt in range(_ATTEMPTS):
        try:
            return _ingest_once(merchant, items)
        except IntegrityError:
            # Another request stored one of these keys after our look-up: its transaction
            # has committed, so the next look-up finds it. Ours rolled back entirely.
            if attempt == _ATTEMPTS - 1:
                raise
            for item in items:
                item.event, item.replayed = None, False
    raise AssertionError("unreachable")


def _ingest_once(merchant: Merchant, items: list[Item]) -> list[Item]:
    now = timezone.now()
    expired = _replay_known(merchant, items, now - TTL)
    new = [item for item in items if item.event is None]
    if not new:
        return items

    def remember(events: list[Event]) -> None:
        _remember(merchant, new, events, now, expired)

    events = emit_many(merchant, [item.fields for item in new], in_transaction=remember)
    for item, event in zip(new, events, strict=True):
        item.event = event
    return items


def _replay_known(merchant: Merchant, items: list[Item], cutoff: datetime) -> list[str]:
    """Give items whose key is known (and younger than 24 h) the event it made.

    Returns:
        The keys that are stored but expired: a new event may take them over.

    Raises:
        KeyConflict: a known key came with a different request.
    """
    keys = [item.key for item in items if item.key]
    if not keys:
        return []
    rows = {
        key: (fp, old, event_id) for key, fp, old, event_id in _key_rows(merchant, keys, cutoff)
    }
    expired, conflicts, replays = [], [], []
    for index, item in enumerate(items):
        row = rows.get(item.key or "")
        if row is None:
            continue
        if row[1]:
            expired.append(item.key or "")
        elif row[0] != item.fingerprint:
            conflicts.append(index)
        else:
            replays.append((item, row[2]))
    if conflicts:
        raise KeyConflict(conflicts)
    if replays:
        events = Event.objects.select_related("event_type").in_bulk([pk for _, pk in replays])
        for item, pk in replays:
            events[pk].merchant = merchant  # what the API shows, without another query
            item.event, item.replayed = events[pk], True
    return expired


def _key_rows(merchant: Merchant, keys: list[str], cutoff: datetime) -> list[tuple[Any, ...]]:
    """(key, fingerprint, expired, event id) of the merchant's stored `keys`.

    One plain query, as `Endpoint.objects.subscriber_ids` is: compiling it with the ORM cost
    more than running it, on the path of every keyed emit.
    """
    qn = connection.ops.quote_name
    sql = (
        f"SELECT {qn('key')}, fingerprint, created_at < %s, event_id "
        f"FROM {qn(IdempotencyKey._meta.db_table)} "
        f"WHERE merchant_id = %s AND {qn('key')} IN ({', '.join(['%s'] * len(keys))})"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [connection.ops.adapt_datetimefield_value(cutoff), merchant.pk, *keys])
        return cursor.fetchall()


def _remember(
    merchant: Merchant, new: list[Item], events: list[Event], now: datetime, expired: list[str]
) -> None:
    """Store the new items' keys, inside the transaction that stores their events.

    Raises:
        IntegrityError: a key was stored meanwhile by another request (we lost the race).
    """
    if expired:
        # A key past 24 h may be reused: its row goes (if no one else took it over meanwhile).
        IdempotencyKey.objects.filter(
            merchant=merchant, key__in=expired, created_at__lt=now - TTL
        ).delete()
    created = connection.ops.adapt_datetimefield_value(now)
    rows = [
        (merchant.pk, item.key, item.fingerprint, event.pk, created)
        for item, event in zip(new, events, strict=True)
        if item.key
    ]
    if rows:
        with connection.cursor() as cursor:
            # A prepared INSERT: bulk_create's per-field work cost more than the statement,
            # inside the write transaction (on SQLite, the machine-wide write lock).
            cursor.executemany(insert_sql(IdempotencyKey, _KEY_COLUMNS), rows)


_KEY_COLUMNS = ("merchant_id", "key", "fingerprint", "event_id", "created_at")
