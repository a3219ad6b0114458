"""The delivery engine: creating, claiming, sending, recording and sweeping deliveries.

The database owns delivery state; Redis only carries "there is work" (a pump job). Modules:
`creating` (the one function that creates deliveries, emit, Send test, retries), `finding`
(which endpoints have due work), `choosing` (which of them a claim serves, fairly),
`claiming` (claims within every cap), `pacing` (rate limits), `sequencing` (ordered
delivery), `sending` (one attempt, never raises), `recording` (outcomes in bulk, never
raises), `breaker` (parking endpoints that never answer), `disabling` (the one way to disable
an endpoint), `senders` (a worker's event loop and recorder), `pumping` (its claims),
`pump_thread` (the thread they run on), `sweeping` (the every-second check), `notifying`
(e-mails, as jobs of their own), `queueing` (RQ), `clock` (the database's), `replaying` (past
events for a new webhook).
"""

from deliveries.engine.creating import (
    create_deliveries,
    emit,
    emit_many,
    resend,
    retry_failed,
    retry_now,
    send_now,
    send_test,
)
from deliveries.engine.disabling import disable_endpoint
from deliveries.engine.replaying import ReplayRefused, count_missing, replay

__all__ = [
    "ReplayRefused",
    "count_missing",
    "create_deliveries",
    "disable_endpoint",
    "emit",
    "emit_many",
    "replay",
    "resend",
    "retry_failed",
    "retry_now",
    "send_now",
    "send_test",
]
