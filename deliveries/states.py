"""The states people are shown (`Delivery.State`) as queries: to filter and to count by.

A pending delivery is held while its webhook is paused by the circuit breaker, retrying once
an attempt failed, and waiting before its first attempt; a delivering one is sending.
"""

from __future__ import annotations

from django.db.models import Case, CharField, F, Q, Value, When

from deliveries.models import Delivery
from endpoints.models import Endpoint
from lib import ordering

_PENDING = Q(status=Delivery.Status.PENDING)
_PAUSED = Q(endpoint__is_enabled=True, endpoint__breaker_state=Endpoint.BreakerState.OPEN)

# Whose state is which; each delivery matches exactly one.
FILTERS: dict[str, Q] = {
    Delivery.State.HELD: _PENDING & _PAUSED,
    Delivery.State.RETRYING: _PENDING & ~_PAUSED & Q(attempts__gt=0),
    Delivery.State.WAITING: _PENDING & ~_PAUSED & Q(attempts=0),
    Delivery.State.SENDING: Q(status=Delivery.Status.DELIVERING),
    Delivery.State.SUCCEEDED: Q(status=Delivery.Status.SUCCEEDED),
    Delivery.State.FAILED: Q(status=Delivery.Status.FAILED),
    Delivery.State.CANCELLED: Q(status=Delivery.Status.CANCELLED),
}

# The order badges and filters list them in.
ORDER = [
    Delivery.State.SUCCEEDED,
    Delivery.State.FAILED,
    Delivery.State.RETRYING,
    Delivery.State.HELD,
    Delivery.State.WAITING,
    Delivery.State.SENDING,
    Delivery.State.CANCELLED,
]


def expression() -> Case:
    """The state of each row, for `.annotate(state=...)` and grouping."""
    return Case(
        When(_PENDING & _PAUSED, then=Value(Delivery.State.HELD.value)),
        When(_PENDING & Q(attempts__gt=0), then=Value(Delivery.State.RETRYING.value)),
        When(_PENDING, then=Value(Delivery.State.WAITING.value)),
        When(Q(status=Delivery.Status.DELIVERING), then=Value(Delivery.State.SENDING.value)),
        default=F("status"),
        output_field=CharField(),
    )


def choices() -> list[tuple[str, str]]:
    return [(state.value, state.label) for state in ORDER]


def note_ordering(deliveries: list[Delivery]) -> None:
    """Ordered delivery, for pages: set `waits_for` (the public id of the delivery of the same
    value each one waits for, or None) and `ordering_shown` (its value as a person reads it)
    on each delivery, in one query for all of them."""
    waiting = Delivery.objects.waiting_for_ids(deliveries)
    for delivery in deliveries:
        delivery.waits_for = waiting.get(delivery.pk)
        delivery.ordering_shown = ordering.shown(delivery.ordering_value)
