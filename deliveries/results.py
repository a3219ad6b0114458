"""What one attempt to send a delivery came to: the engine's and the models' shared record.

Plain data with no model import, so `deliveries.models` (which moves a delivery to its next
state from it) and `deliveries.engine` (which makes it) both use it without importing each
other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lib import policy


@dataclass
class AttemptResult:
    delivery: Any  # the Delivery it is for (not imported: models import this module)
    request_body: bytes
    request_headers: dict[str, str]
    status: int | None = None
    error: str = ""
    response_headers: dict[str, str] = field(default_factory=dict)
    response_body: bytes = b""
    truncated: bool = False
    duration_ms: int = 0
    permanent: bool = False
    answered: bool = False  # an HTTP answer came back (a timeout or refused connection: no)
    sent: bool = True  # False when the claim was given back unsent
    moved: bool = False  # the delivery was moved to its next state (in memory) for recording

    @property
    def ok(self) -> bool:
        return policy.is_success(self.status)
