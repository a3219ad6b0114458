"""Creating deliveries: `create_deliveries_of_events` is the one function that makes them.

`create_deliveries` is its form for one event.

Emit, Send test, one-off `webhook_url`s, resend and retries all come through here (resend and
retries make existing deliveries due again through `retry_now`), so every delivery starts
with the same columns, the database's clock as its due time, and a kick after commit.

It is also where an endpoint's `filter` applies: an event whose data does not match gets no
delivery to that endpoint (nothing to send, retry or count as failed), on every path that
creates deliveries. Only Send test skips it: the merchant asked for that one delivery. And
where an endpoint's `ordering_key` is read: each delivery stores its event's value of that
field (`Delivery.ordering_value`), which claims keep in order.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.db.models import Max, OuterRef, Q, Subquery
from django.utils import timezone

from accounts.models import Merchant
from catalogue.models import EventType
from deliveries.engine.claiming import claim_ids
from deliveries.engine.clock import now_sql
from deliveries.engine.queueing import kick
from deliveries.engine.recording import record
from deliveries.engine.sending import attempt
from deliveries.models import PLACE_STEP, Delivery, Event, active_event_type
from deliveries.sql import insert_sql
from endpoints.models import Endpoint, test_data
from lib import ordering
from lib.event_data import check_event_data
from lib.filters import Filter, FilterError, compile_filter
from lib.ids import new_id

log = logging.getLogger(__name__)

_DELIVERY_COLUMNS = (
    "public_id",
    "merchant_id",
    "event_id",
    "endpoint_id",
    "url",
    "status",
    "attempts",
    "next_attempt_at",
    "claimed_by",
    "last_error",
    "created_at",
    "ordering_value",
    "place",
)

Target = tuple[int | None, str]  # (endpoint id, one-off URL)


def create_deliveries(
    event: Event,
    targets: list[Target],
    *,
    due: bool = True,
    kick_pump: bool = True,
    filtered: bool = True,
) -> list[str]:
    """Store one delivery per target for an event; kick a pump after commit when due.

    Args:
        event: the stored event.
        targets: (endpoint id, "") for an endpoint, (None, url) for a one-off URL.
        due: False for a delivery the caller sends itself (Send test).
        kick_pump: False when the caller kicks once for many events.
        filtered: False to skip the endpoints' filters (Send test).

    Returns:
        The public ids of the deliveries made, in the order of `targets`; a target whose
        endpoint's filter the event does not match has none.
    """
    return create_deliveries_of_events(
        [(event, targets)], due=due, kick_pump=kick_pump, filtered=filtered
    )[0]


def create_deliveries_of_events(
    plan: Sequence[tuple[Event, list[Target]]],
    *,
    due: bool = True,
    kick_pump: bool = True,
    filtered: bool = True,
    created_at: datetime | None = None,
) -> list[list[str]]:
    """`create_deliveries` for many events at once: one statement for all their rows.

    A batch of 100 events made 100 statements (three quarters of `emit_many` on PostgreSQL).

    Args:
        filtered: leave out the targets whose endpoint's filter does not match the event's
            data (False for a Send test, which the merchant asked for).
        created_at: the deliveries' creation (and due) time instead of their event's: a
            replay of past events starts each delivery's retry window now.

    Returns:
        Each event's deliveries' public ids, in the order of `plan` and of its targets
        (without the targets that the endpoint's filter leaves out).
    """
    controls = _controls(plan)
    if filtered:
        plan = _apply_filters(plan, controls)
    ops = connection.ops
    # PostgreSQL: due by the database's clock, not the web machine's (workers compare with it).
    db_clock = due and connection.vendor == "postgresql"
    sql = insert_sql(
        Delivery, _DELIVERY_COLUMNS, values={"next_attempt_at": now_sql()} if db_clock else None
    )
    rows = []
    ids: list[list[str]] = []
    # A one-off URL with credentials is stored encrypted (the field's own conversion).
    prep_url = Delivery._meta.get_field("url").get_db_prep_save
    for event, targets in plan:
        created = ops.adapt_datetimefield_value(created_at or event.created_at)
        due_at: tuple[Any, ...] = () if db_clock else (created if due else None,)
        event_ids = [new_id("dlv") for _ in targets]
        ids.append(event_ids)
        rows += [
            (
                public_id,
                event.merchant_id,
                event.pk,
                endpoint_id,
                prep_url(url, connection),
                "pending",
                0,
                *due_at,
                "",
                "",
                created,
                *_order_of(event, controls.get(endpoint_id, _NONE)[1] if due else ""),
            )
            for public_id, (endpoint_id, url) in zip(event_ids, targets, strict=True)
        ]
    if not rows:
        return ids
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)
    if due and kick_pump:
        fresh = {pk for _, targets in plan for pk, _ in targets if pk is not None}
        transaction.on_commit(functools.partial(kick, fresh=fresh))
    return ids


_NONE: tuple[Any, str] = (None, "")


def _order_of(event: Event, key: str) -> tuple[str | None, int | None]:
    """(ordering value, place) of a delivery of this event to an endpoint with this key; a
    delivery the caller sends itself (Send test) is never ordered."""
    value = ordering.value_of(event.data, key)
    return (value, event.sequence * PLACE_STEP) if value is not None else (None, None)


def _controls(plan: Sequence[tuple[Event, list[Target]]]) -> dict[int, tuple[Any, str]]:
    """(filter, ordering key) of the endpoints in the plan that have either: one query."""
    endpoint_ids = {pk for _, targets in plan for pk, _ in targets if pk is not None}
    if not endpoint_ids:
        return {}
    rows = (
        Endpoint.objects.filter(pk__in=endpoint_ids)
        .filter(Q(filter__isnull=False) | ~Q(ordering_key=""))
        .values_list("pk", "filter", "ordering_key")
    )
    return {pk: (spec, key) for pk, spec, key in rows}


def _apply_filters(
    plan: Sequence[tuple[Event, list[Target]]], controls: dict[int, tuple[Any, str]]
) -> list[tuple[Event, list[Target]]]:
    """The plan without the targets whose endpoint's filter an event's data does not match.

    Each filter is compiled once (and cached by lib.filters across calls).
    """
    compiled: dict[int, Filter] = {}
    for pk, (spec, _) in controls.items():
        if not spec:
            continue
        try:
            compiled[pk] = compile_filter(spec)
        except FilterError:
            # Validated on save, so only a row written by other means gets here; delivering
            # loses nothing, where dropping would lose events silently.
            log.exception("endpoint %s has an invalid filter; delivering unfiltered", pk)
    if not compiled:
        return list(plan)
    return [
        (
            event,
            [
                (pk, url)
                for pk, url in targets
                if pk is None or pk not in compiled or compiled[pk].matches(event.data)
            ],
        )
        for event, targets in plan
    ]


def emit(merchant: Merchant, type_name: str, data: Any, *, webhook_url: str | None = None) -> Event:
    """Store an event and one delivery per subscribed, enabled endpoint; send after commit.

    The subscribers are read before the write transaction: on SQLite that transaction holds
    the machine-wide write lock that the workers' claims and records also wait for.

    Raises:
        UnknownEventType: when no active type has that name.
    """
    subscribers = Endpoint.objects.subscriber_ids(merchant, active_event_type(type_name))
    targets: list[Target] = [(pk, "") for pk in subscribers]
    if webhook_url:
        targets.append((None, webhook_url))
    with transaction.atomic():
        event = Event.objects.create_event(merchant, type_name, data, webhook_url=webhook_url)
        create_deliveries(event, targets)
    return event


def emit_many(
    merchant: Merchant,
    items: Sequence[Mapping[str, Any]],
    *,
    in_transaction: Callable[[list[Event]], None] | None = None,
) -> list[Event]:
    """Store many events and their deliveries in one transaction; one kick after commit.

    What `emit()` does for one event, at batch cost: subscribers are read once per event
    type (before the write transaction, as in `emit()`), sequence numbers are taken with one
    UPDATE, the events are inserted with one statement, their deliveries with one more, and
    one pump is kicked after commit.

    Args:
        merchant: the tenant the events belong to.
        items: {"type", "data" (default {}), "webhook_url" (optional)} per event.
        in_transaction: called with the stored events inside the transaction, so that the
            caller's own rows (idempotency keys) commit or roll back with them.

    Returns:
        The stored events, in the order of `items`.

    Raises:
        UnknownEventType: when an item's type is not an active type (nothing is stored).
        InvalidEventData: when an item's data holds U+0000 or a lone surrogate (nothing is
            stored).
    """
    if not items:
        return []
    for item in items:
        check_event_data(item.get("data", {}))
    types = {item["type"]: active_event_type(item["type"]) for item in items}
    subscribers = {
        name: Endpoint.objects.subscriber_ids(merchant, event_type)
        for name, event_type in types.items()
    }
    with transaction.atomic():
        events = _insert_events(merchant, items, types)
        plan = []
        for event, item in zip(events, items, strict=True):
            targets: list[Target] = [(pk, "") for pk in subscribers[item["type"]]]
            if event.webhook_url:
                targets.append((None, event.webhook_url))
            plan.append((event, targets))
        create_deliveries_of_events(plan)  # one kick after commit, however many events
        if in_transaction is not None:
            in_transaction(events)
    return events


def _insert_events(
    merchant: Merchant, items: Sequence[Mapping[str, Any]], types: dict[str, EventType]
) -> list[Event]:
    """Insert the events with consecutive sequence numbers taken by one UPDATE.

    The UPDATE takes the merchant row's write lock, as `Merchant.next_sequence()` does, so
    concurrent emitters queue up and every number is used once, in commit order.
    """
    table = connection.ops.quote_name(Merchant._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET event_sequence = event_sequence + %s WHERE id = %s "
            "RETURNING event_sequence",
            [len(items), merchant.pk],
        )
        merchant.event_sequence = last = cursor.fetchone()[0]
    first = last - len(items) + 1
    created = timezone.now()
    events = [
        Event(
            merchant=merchant,
            event_type=types[item["type"]],
            data=item.get("data", {}),
            webhook_url=item.get("webhook_url") or "",
            sequence=first + n,
            created_at=created,
        )
        for n, item in enumerate(items)
    ]
    for start in range(0, len(events), _EVENTS_PER_INSERT):
        _insert_event_rows(events[start : start + _EVENTS_PER_INSERT])
    return events


_EVENT_COLUMNS = (
    "public_id",
    "merchant_id",
    "event_type_id",
    "data",
    "sequence",
    "webhook_url",
    "created_at",
)
_EVENTS_PER_INSERT = 100  # 700 parameters: within every SQLite build's limit


def _insert_event_rows(events: list[Event]) -> None:
    """One multi-row INSERT ... RETURNING id; the ids come back in VALUES order, as Django's
    bulk_create also relies on (which cost more than the statement, in per-field work)."""
    ops = connection.ops
    data_field = Event._meta.get_field("data")
    url_field = Event._meta.get_field("webhook_url")
    created = ops.adapt_datetimefield_value(events[0].created_at)
    one_row = f"({', '.join(['%s'] * len(_EVENT_COLUMNS))})"
    sql = insert_sql(Event, _EVENT_COLUMNS, returning="id").replace(
        f"VALUES {one_row}", "VALUES " + ", ".join([one_row] * len(events)), 1
    )
    params: list[Any] = []
    for e in events:
        data = data_field.get_db_prep_save(e.data, connection)
        params += [
            e.public_id,
            e.merchant_id,
            e.event_type_id,
            data,
            e.sequence,
            url_field.get_db_prep_save(e.webhook_url, connection),
            created,
        ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        ids = [row[0] for row in cursor.fetchall()]
    for event, pk in zip(events, ids, strict=True):
        event.pk = pk
        event._state.adding = False
        event._state.db = connection.alias


def send_test(endpoint: Endpoint, data: Any = None) -> Delivery:
    """Send a `webhook.test` event to an endpoint now, in the calling thread.

    Args:
        endpoint: where to send it.
        data: the event's data; None sends the standard test message.

    Returns:
        The delivery, with its outcome recorded (status, last code, attempts).
    """
    with transaction.atomic():
        if data is None:
            data = test_data(endpoint)
        event = Event.objects.create_event(endpoint.merchant, "webhook.test", data)
        # Unfiltered: the merchant asked for this delivery; "Test filter" says what matches.
        (public_id,) = create_deliveries(event, [(endpoint.pk, "")], due=False, filtered=False)
    delivery = Delivery.objects.get(public_id=public_id)
    send_now(delivery)
    return delivery


def send_now(delivery: Delivery) -> bool:
    """Claim, send and record one delivery in the calling thread.

    Returns:
        False when it was not pending (a worker has it, or it is finished).
    """
    token = new_id("now")
    claimed = claim_ids(token, [delivery.pk])
    if not claimed:
        return False
    record(token, [attempt(claimed[0])])
    delivery.refresh_from_db()
    return True


def retry_now(qs: Any, *, include_succeeded: bool = False, keep_place: bool = False) -> int:
    """Make deliveries due again now (manual retry, recover, resend).

    A manual retry is one more attempt: the attempt count and the retry window are kept, so
    a delivery that already exhausted its policy is not retried for 48 hours more. An ordered
    delivery goes behind every delivery of its value that exists now (an old failure does not
    jump ahead of newer ones), unless `keep_place`.
    """
    statuses = [Delivery.Status.FAILED, Delivery.Status.CANCELLED]
    if include_succeeded:
        statuses.append(Delivery.Status.SUCCEEDED)
    to_enabled = Q(endpoint__isnull=True) | Q(endpoint__is_enabled=True)
    changes: dict[str, Any] = {
        "status": Delivery.Status.PENDING,
        "next_attempt_at": timezone.now(),
        "completed_at": None,
        "manual_retry": True,
    }
    if not keep_place:
        # One more than the last place of its value; null for an unordered delivery (no
        # row has a null value to match).
        changes["place"] = (
            Subquery(
                Delivery.objects.filter(
                    endpoint_id=OuterRef("endpoint_id"), ordering_value=OuterRef("ordering_value")
                )
                .values("endpoint_id")
                .annotate(last=Max("place"))
                .values("last")
            )
            + 1
        )
    with transaction.atomic():
        count = qs.filter(to_enabled, status__in=statuses).update(**changes)
        if count:
            transaction.on_commit(kick)
    return count


def retry_failed(endpoint: Endpoint, since: datetime | None = None) -> int:
    """Schedule every failed or cancelled delivery of an endpoint (since `since`) again."""
    qs = Delivery.objects.filter(
        endpoint=endpoint, status__in=[Delivery.Status.FAILED, Delivery.Status.CANCELLED]
    )
    if since is not None:
        qs = qs.filter(created_at__gte=since)
    return retry_now(qs)


def resend(event: Event) -> int:
    """Send an event again to every endpoint it went to, as new attempts."""
    return retry_now(event.deliveries.all(), include_succeeded=True)
