"""Events, deliveries and the worker side. `emit()` is the POS system's way in."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from accounts.models import Merchant
    from deliveries.models import Event


def emit(
    merchant: Merchant, event_type: str, data: Any, *, webhook_url: str | None = None
) -> Event:
    """Store an event and its deliveries, and start sending them after commit.

    Args:
        merchant: the tenant the event belongs to.
        event_type: a name from the catalogue, e.g. "receipts.update".
        data: any JSON-serialisable value.
        webhook_url: a one-off URL that also receives this event (Smart Router's per-invoice URL).

    Returns:
        The stored Event.
    """
    from deliveries.engine import emit as emit_event

    return emit_event(merchant, event_type, data, webhook_url=webhook_url)


def emit_many(merchant: Merchant, items: Sequence[Mapping[str, Any]]) -> list[Event]:
    """Store many events and their deliveries in one transaction (all or none of them).

    Faster than `emit()` in a loop: subscribers are read once per event type and the pump is
    kicked once after commit.

    Args:
        merchant: the tenant the events belong to.
        items: {"type", "data" (default {}), "webhook_url" (optional)} per event.

    Returns:
        The stored Events, in the order of `items`.
    """
    from deliveries.engine import emit_many as emit_events

    return emit_events(merchant, items)
