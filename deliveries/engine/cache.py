"""A worker's cache of the events and endpoints its claimed deliveries share."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

from django.db import connection

from deliveries.models import Delivery, Event
from endpoints.models import Endpoint

_CLAIM_FIELDS = (
    "id",
    "public_id",
    "event_id",
    "endpoint_id",
    "merchant_id",
    "url",
    "attempts",
    "created_at",
    "last_attempt_at",
    "claimed_until",
    "manual_retry",
    "ordering_value",
)


def claimed_columns() -> str:
    """The columns a claimed delivery is built from, for a claim's UPDATE ... RETURNING."""
    qn = connection.ops.quote_name
    return ", ".join(qn(Delivery._meta.get_field(name).column) for name in _CLAIM_FIELDS)


@lru_cache(maxsize=2)
def _converters(vendor: str) -> list[tuple[str, Callable[[Any], Any]]]:
    """Each claimed column's name and how a raw value becomes the field's Python value
    (SQLite hands back datetimes as text and booleans as integers)."""
    result: list[tuple[str, Callable[[Any], Any]]] = []
    for name in _CLAIM_FIELDS:
        field = Delivery._meta.get_field(name)
        column = field.get_col(Delivery._meta.db_table)  # what Django's own converters expect
        steps = connection.ops.get_db_converters(column) + column.get_db_converters(connection)
        if not steps:
            result.append((field.attname, _same))
            continue

        def convert(value: Any, steps: list[Any] = steps, column: Any = column) -> Any:
            for step in steps:
                value = step(value, column, connection)
            return value

        result.append((field.attname, convert))
    return result


def _same(value: Any) -> Any:
    return value


class ClaimCache:
    """Events and endpoints for claimed deliveries, loaded once and shared.

    Ten deliveries of one event share one Event object (and its encoded body), and a worker
    reloads an endpoint at most every few seconds, so a claim costs one narrow query for the
    deliveries instead of building four model instances per row.
    """

    ENDPOINT_TTL = 5.0  # seconds: how soon a worker sees a rotated secret or a new timeout
    MAX_EVENTS = 500  # about two claims' worth: more only held memory (the benchmark's RSS grew)

    def __init__(self) -> None:
        self.events: dict[int, Event] = {}
        self.endpoints: dict[int, Endpoint] = {}
        self.endpoints_loaded_at = time.monotonic()

    def build(self, rows: Sequence[tuple[Any, ...]], token: str) -> list[Delivery]:
        """Deliveries from their claimed rows (`claimed_columns()`), with event and endpoint."""
        if not rows:
            return []
        self._load_events({row[2] for row in rows})
        self._load_endpoints({row[3] for row in rows if row[3] is not None})
        deliveries = []
        converters = _converters(connection.vendor)  # built once per database kind
        for row in rows:
            pairs = zip(converters, row, strict=True)
            delivery = Delivery(**{name: convert(value) for (name, convert), value in pairs})
            delivery.status = Delivery.Status.DELIVERING
            delivery.claimed_by = token
            delivery.event = self.events[delivery.event_id]
            if delivery.endpoint_id is not None:
                delivery.endpoint = self.endpoints[delivery.endpoint_id]
            deliveries.append(delivery)
        return deliveries

    def _load_events(self, ids: set[int]) -> None:
        missing = ids - self.events.keys()
        if not missing:
            return
        if len(self.events) + len(missing) > self.MAX_EVENTS:
            # Keep the ones this claim uses: clearing them too lost an event mid-claim.
            self.events = {pk: self.events[pk] for pk in ids if pk in self.events}
        for event in Event.objects.filter(pk__in=missing).select_related("event_type", "merchant"):
            self.events[event.pk] = event

    def _load_endpoints(self, ids: set[int]) -> None:
        if time.monotonic() - self.endpoints_loaded_at > self.ENDPOINT_TTL:
            self.endpoints.clear()
            self.endpoints_loaded_at = time.monotonic()
        missing = ids - self.endpoints.keys()
        if missing:
            self.endpoints.update(Endpoint.objects.in_bulk(missing))
