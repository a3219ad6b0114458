"""What RQ workers run: the delivery pump and the e-mails (entry points only).

The engine itself lives in `deliveries.engine`; these names are what RQ stores in Redis,
so they stay put across upgrades.
"""

from __future__ import annotations

from django.conf import settings

from deliveries.engine import pump_thread
from deliveries.engine.notifying import send_endpoint_email
from deliveries.engine.pumping import Pump
from deliveries.engine.queueing import (
    PUMP_QUEUED_KEY,
    QUEUE,
    kick,
    pump_started,
    queue,
)
from deliveries.engine.sweeping import Sweeper, sweep

__all__ = ["PUMP_QUEUED_KEY", "QUEUE", "Sweeper", "kick", "notify", "pump", "queue", "sweep"]


def pump(max_seconds: float | None = None) -> int:
    """Send due deliveries until none is left, keeping the sender threads busy.

    Args:
        max_seconds: stop claiming after this long (default WEBHOOK_PUMP_SECONDS) and hand
            over to a fresh job.

    Returns:
        How many attempts were made.
    """
    pump_started()
    if pump_thread.wake():
        return 0  # this worker's pump thread does the sending (deliveries.worker)
    return Pump().run(max_seconds or settings.WEBHOOK_PUMP_SECONDS)


def notify(endpoint_id: int, kind: str) -> bool:
    """E-mail a merchant about an endpoint (`warning` or `disabled`).

    Returns:
        True when a message was handed to the mail server.
    """
    return send_endpoint_email(endpoint_id, kind)
