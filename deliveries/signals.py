"""What the delivery engine tells the rest of the project, as Django signals.

The engine sends them with one line each and knows nothing of who listens; the operational
webhooks (deliveries/operational.py) turn them into events. Receivers run in the engine's
thread, some inside its recording transaction: they must be quick and must never raise.
"""

from django.dispatch import Signal

# endpoint (Endpoint, its disabled_detail set), reason (str), changed (int: 1 if this call
# disabled it)
endpoint_disabled = Signal()
# endpoint_id (int): the half-window warning was taken (once per failing streak)
endpoint_failing = Signal()
# endpoint_ids (set[int]), now (datetime): breakers that opened in this batch
breaker_opened = Signal()
# endpoint_ids (set[int]): endpoints that answered; sent before their breakers are closed
breaker_closing = Signal()
# results (list[AttemptResult]): a recorded batch; deliveries whose status is failed ended
delivery_recorded = Signal()
