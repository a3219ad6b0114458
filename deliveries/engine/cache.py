"""A worker's cache of the events and endpoints its claimed deliveries share."""

from __future__ import annotations

import time
from collections.abc import Sequence

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
)


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

    def load(self, ids: Sequence[int], token: str) -> list[Delivery]:
        """The deliveries among `ids` that this token holds, with event and endpoint."""
        rows = list(
            Delivery.objects.filter(
                pk__in=ids, status=Delivery.Status.DELIVERING, claimed_by=token
            ).values_list(*_CLAIM_FIELDS)
        )
        self._load_events({row[2] for row in rows})
        self._load_endpoints({row[3] for row in rows if row[3] is not None})
        deliveries = []
        for row in rows:
            delivery = Delivery(**dict(zip(_CLAIM_FIELDS, row, strict=True)))
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
