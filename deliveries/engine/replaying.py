"""Past events for a new webhook: send a webhook the merchant's stored events since a time.

A merchant who connects a new app (an accounting package) wants what happened before. Each
past event the webhook subscribes to, and that it has no delivery of yet, gets one ordinary
delivery through `create_deliveries_of_events`: the claims' fairness and the webhook's own
cap (`max_in_flight`), breaker and rate apply to them as to any other, so a replay of
thousands of events costs other merchants and webhooks nothing. The deliveries are created
in event order with one due time, and claims take an endpoint's deliveries by due time then
id, so they go out in event order.

Idempotent: an event that already has a delivery to the webhook (from emit, or from an
earlier replay) is skipped, so asking twice sends nothing twice. Replays of one webhook are
serialised by a write on the webhook's row taken before looking for what it lacks.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, QuerySet
from django.utils import timezone

from catalogue.models import EventType
from catalogue.seed import PLATFORM_CATEGORY
from deliveries.engine.creating import Target, create_deliveries_of_events
from deliveries.models import Delivery, Event
from endpoints.models import Endpoint

# Event types never replayed: a test is for the webhook it was sent to.
NOT_REPLAYED = ("webhook.test",)
# Events per transaction: on SQLite a transaction holds the write lock the workers wait for.
CHUNK = 500


class ReplayRefused(ValueError):
    """The request cannot be replayed (before the retention window, unknown type)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def retention_start(endpoint: Endpoint, now: datetime | None = None) -> datetime:
    """The earliest time a replay may start from: the merchant's retention window."""
    days = endpoint.merchant.retention_days or settings.RETENTION_DAYS
    return (now or timezone.now()) - timedelta(days=days)


def missing_events(
    endpoint: Endpoint, since: datetime, type_names: Iterable[str] = ()
) -> QuerySet[Event]:
    """The merchant's events since `since` that the webhook subscribes to (narrowed to
    `type_names` when given) and has no delivery of, in event order.

    Raises:
        ReplayRefused: `since` is before the retention window, or a type name is unknown.
    """
    if since < retention_start(endpoint):
        days = endpoint.merchant.retention_days or settings.RETENTION_DAYS
        raise ReplayRefused(
            "since", f"Events are kept {days} days: `since` must be within the last {days} days."
        )
    qs = Event.objects.filter(merchant_id=endpoint.merchant_id, created_at__gte=since).exclude(
        event_type__name__in=NOT_REPLAYED
    )
    subscribed = list(endpoint.event_types.values_list("name", flat=True))
    if subscribed:
        qs = qs.filter(event_type__name__in=subscribed)
    else:
        # "All events" takes no operational ones, live or replayed (deliveries/operational.py).
        qs = qs.exclude(event_type__category__slug=PLATFORM_CATEGORY)
    names = sorted(set(type_names))
    if names:
        known = set(EventType.objects.filter(name__in=names).values_list("name", flat=True))
        unknown = [name for name in names if name not in known]
        if unknown:
            raise ReplayRefused(
                "event_types",
                f"Unknown event type {unknown[0]!r}. See GET /api/v1/event-types.",
            )
        qs = qs.filter(event_type__name__in=names)
    sent = Delivery.objects.filter(event=OuterRef("pk"), endpoint=endpoint)
    return qs.filter(~Exists(sent)).order_by("sequence")


def count_missing(endpoint: Endpoint, since: datetime, type_names: Iterable[str] = ()) -> int:
    """How many events `replay` would send now (what the dashboard shows before it does)."""
    return missing_events(endpoint, since, type_names).count()


def replay(endpoint: Endpoint, since: datetime, type_names: Iterable[str] = ()) -> int:
    """Create one delivery per missing past event, in event order; kicked after each commit.

    Returns:
        How many deliveries were created (0 when asked again: nothing is sent twice).

    Raises:
        ReplayRefused: as `missing_events`.
    """
    names = list(type_names)
    missing_events(endpoint, since, names)  # validates before anything is written
    now = timezone.now()
    total = 0
    while True:
        with transaction.atomic():
            # Serialises replays of this webhook: a second one waits here, then finds the
            # deliveries the first made.
            Endpoint.objects.filter(pk=endpoint.pk).update(updated_at=now)
            events = list(missing_events(endpoint, since, names)[:CHUNK])
            if not events:
                return total
            target: list[Target] = [(endpoint.pk, "")]
            create_deliveries_of_events([(e, target) for e in events], created_at=now)
        total += len(events)
