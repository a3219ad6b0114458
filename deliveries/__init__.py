"""Events, deliveries and the worker side. `emit()` is the POS system's way in."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from deliveries.models import Event
    from endpoints.models import Merchant


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
