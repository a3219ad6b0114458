"""Send test: a `webhook.test` event, or the merchant's own latest event of a type, sent now."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db.models import Exists, OuterRef, QuerySet

from accounts.models import Merchant
from catalogue.models import EventType
from deliveries import engine
from endpoints.models import Endpoint
from endpoints.validators import check_allowed_port

if TYPE_CHECKING:
    from deliveries.models import Delivery, Event


class NoEventYet(ValueError):
    """The merchant has no event of the chosen type to send as a test."""


class NotAllowedHere(NoEventYet):
    """The webhook's URL may not be sent to from here (WEBHOOK_ALLOWED_PORTS)."""


def latest_event(merchant: Merchant, type_name: str) -> Event | None:
    """The merchant's most recent event of a type; test events do not count."""
    from deliveries.models import Event

    return (
        Event.objects.for_merchant(merchant)
        .filter(event_type__name=type_name)
        .exclude(event_type__name="webhook.test")
        .order_by("-id")
        .first()
    )


def types_with_events(merchant: Merchant, endpoint: Endpoint) -> QuerySet[EventType]:
    """The types this endpoint subscribes to of which the merchant has a real event."""
    from deliveries.models import Event

    # EXISTS, one probe of (merchant, event_type) per type: `IN (the merchant's event types)`
    # read every event the merchant ever sent (150 ms of the webhook page with a million).
    emitted = Event.objects.filter(merchant=merchant, event_type=OuterRef("pk"))
    return (
        endpoint.event_types.filter(Exists(emitted))
        .exclude(name="webhook.test")
        .order_by("name")
        .distinct()
    )


def send_test(endpoint: Endpoint, type_name: str = "") -> Delivery:
    """Send a test now, with the data of the latest real event of `type_name` if given.

    Raises:
        NoEventYet: the merchant has no event of that type.
        NotAllowedHere: the URL is on a port this server may not send to (`make run`).
    """
    try:
        check_allowed_port(endpoint.url)
    except ValueError as exc:
        raise NotAllowedHere(f"Not sent: {exc}") from None
    if not type_name:
        return engine.send_test(endpoint)
    event = latest_event(endpoint.merchant, type_name)
    if event is None:
        raise NoEventYet(f"You have no {type_name} event yet: send the test with sample data.")
    return engine.send_test(endpoint, data=event.data)
