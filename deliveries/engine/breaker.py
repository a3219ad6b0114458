"""The circuit breaker: an endpoint that keeps timing out or refusing connections is parked.

Closed: deliveries flow. After WEBHOOK_BREAKER_THRESHOLD attempts in a row got no answer at all
(a timeout, a refused or reset connection), the breaker opens: the endpoint's due deliveries
wait, holding no sender thread, until `breaker_probe_at`. Then it is half-open: claims let one
delivery through as a probe. An answer (any HTTP status: the receiver is there) closes it and
the backlog drains at the endpoint's cap; silence opens it again for twice as long, up to
WEBHOOK_BREAKER_MAX_PAUSE_SECONDS. The state lives on the endpoint row, so every worker on every
machine sees the same breaker.

Before the breaker opens, adaptive concurrency (additive increase, multiplicative decrease, as
TCP does) already eases the load: a batch in which an endpoint timed out or refused the
connection halves what it may have in flight (`Endpoint.concurrency_limit`, down to 1); a batch
in which it answered, and never went silent, adds one, back up to its `max_in_flight`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Case, F, Q, Value, When
from django.db.models.functions import Coalesce, Greatest

from deliveries.results import AttemptResult
from deliveries.signals import breaker_closing, breaker_opened
from endpoints.models import Endpoint

OPEN = Endpoint.BreakerState.OPEN
CLOSED = Endpoint.BreakerState.CLOSED


def pause(trips: int) -> timedelta:
    """How long the breaker stays open after opening `trips` times in a row before."""
    base = settings.WEBHOOK_BREAKER_PAUSE_SECONDS
    return timedelta(
        seconds=min(base * 2 ** min(trips, 20), settings.WEBHOOK_BREAKER_MAX_PAUSE_SECONDS)
    )


def update(results: Sequence[AttemptResult], now: datetime) -> set[int]:
    """Count a batch's answers and silences per endpoint; open or close breakers.

    Returns:
        The endpoints whose breaker opened now.
    """
    answered: set[int] = set()
    silent: Counter[int] = Counter()
    for result in results:
        endpoint_id = result.delivery.endpoint_id
        if endpoint_id is None or not result.sent:
            continue
        if result.answered:
            answered.add(endpoint_id)
        elif not result.permanent:  # a refused address is our policy, not the receiver
            silent[endpoint_id] += 1
    _adapt_concurrency(answered - set(silent), set(silent))
    if answered:
        breaker_closing.send(Endpoint, endpoint_ids=answered)
        Endpoint.objects.filter(pk__in=answered).filter(
            Q(breaker_state=OPEN) | Q(breaker_failures__gt=0)
        ).update(breaker_state=CLOSED, breaker_failures=0, breaker_trips=0, breaker_probe_at=None)
    opened: set[int] = set()
    for endpoint_id, count in silent.items():
        if endpoint_id in answered:
            continue
        Endpoint.objects.filter(pk=endpoint_id).update(
            breaker_failures=F("breaker_failures") + count
        )
        trippable = Endpoint.objects.filter(
            Q(breaker_state=CLOSED) | Q(breaker_probe_at__lte=now),
            pk=endpoint_id,
            breaker_failures__gte=settings.WEBHOOK_BREAKER_THRESHOLD,
        )
        trips = trippable.values_list("breaker_trips", flat=True).first()
        if trips is not None and trippable.update(
            breaker_state=OPEN, breaker_trips=trips + 1, breaker_probe_at=now + pause(trips)
        ):
            opened.add(endpoint_id)
    breaker_opened.send(Endpoint, endpoint_ids=opened, now=now)
    return opened


def _adapt_concurrency(answered: set[int], silent: set[int]) -> None:
    """Halve the allowed in flight of endpoints that went silent; grow back those that answer."""
    if silent:
        Endpoint.objects.filter(pk__in=silent).update(
            concurrency_limit=Greatest(
                Value(1), Coalesce(F("concurrency_limit"), F("max_in_flight")) / Value(2)
            )
        )
    if answered:
        Endpoint.objects.filter(pk__in=answered, concurrency_limit__isnull=False).update(
            concurrency_limit=Case(
                When(concurrency_limit__gte=F("max_in_flight") - 1, then=Value(None)),
                default=F("concurrency_limit") + 1,
            )
        )
