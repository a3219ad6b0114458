"""Disabling an endpoint: the one function every way of disabling goes through.

The merchant (dashboard, API), staff (admin actions and the change form), a 410 Gone and the
auto-disable all call `disable_endpoint`, so each of them stops sending the same way: what was
waiting is cancelled, and what a worker holds is taken back from it, so that the worker's
outcome is not written (its conditional UPDATE matches the claim token, now cleared).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction

from deliveries.engine.clock import db_now
from deliveries.engine.queueing import enqueue_side_effect
from deliveries.models import Delivery
from deliveries.signals import endpoint_disabled, endpoint_failing
from endpoints.models import Endpoint


def disable_endpoint(
    endpoint: Endpoint, reason: str = Endpoint.DisabledReason.MERCHANT, detail: str = ""
) -> bool:
    """Stop sending to an endpoint; waiting and claimed deliveries are cancelled.

    Args:
        endpoint: the endpoint to disable (updated in memory too).
        reason: an `Endpoint.DisabledReason`.
        detail: what the merchant reads beside the reason.

    Returns:
        True when this call disabled it (False when it already was disabled).
    """
    now = db_now()
    with transaction.atomic():
        changed = Endpoint.objects.filter(pk=endpoint.pk, is_enabled=True).update(
            is_enabled=False, disabled_reason=reason, disabled_detail=detail[:500], disabled_at=now
        )
        if changed or not endpoint.is_enabled:
            label = Endpoint.DisabledReason(reason).label if reason else "disabled"
            Delivery.objects.filter(
                endpoint_id=endpoint.pk,
                status__in=[Delivery.Status.PENDING, Delivery.Status.DELIVERING],
            ).update(
                status=Delivery.Status.CANCELLED,
                next_attempt_at=None,
                claimed_by="",
                claimed_until=None,
                completed_at=now,
                last_error=f"Endpoint disabled: {label}"[:500],
            )
    endpoint.is_enabled = False
    if changed:
        endpoint.disabled_reason, endpoint.disabled_detail = reason, detail[:500]
        endpoint.disabled_at = now
    endpoint_disabled.send(Endpoint, endpoint=endpoint, reason=reason, changed=changed)
    return bool(changed)


def auto_disable(endpoint_id: int, reason: str, detail: str) -> None:
    """Disable for a delivery failure and tell the merchant, by a job of its own."""
    endpoint = Endpoint.objects.filter(pk=endpoint_id).first()
    if endpoint is not None and disable_endpoint(endpoint, reason, detail):
        enqueue_side_effect("deliveries.jobs.notify", endpoint_id, "disabled")


def check_failing(ids: set[int], now: datetime) -> None:
    """Warn at half the auto-disable window, and disable at the whole of it.

    Args:
        ids: endpoints whose latest attempts failed.
        now: the time of those attempts.
    """
    window = timedelta(seconds=settings.WEBHOOK_AUTO_DISABLE_SECONDS)
    failing = Endpoint.objects.filter(pk__in=ids, is_enabled=True, failing_since__isnull=False)
    for pk, since in failing.filter(failing_since__lte=now - window).values_list(
        "pk", "failing_since"
    ):
        auto_disable(
            pk,
            Endpoint.DisabledReason.FAILING,
            f"Every delivery failed since {since:%Y-%m-%d %H:%M} UTC.",
        )
    half = failing.filter(failing_since__lte=now - window / 2, failure_warning_sent_at__isnull=True)
    for pk in half.values_list("pk", flat=True):
        # The conditional update makes sure two workers send one warning, not two.
        if Endpoint.objects.filter(pk=pk, failure_warning_sent_at__isnull=True).update(
            failure_warning_sent_at=now
        ):
            enqueue_side_effect("deliveries.jobs.notify", pk, "warning")
            endpoint_failing.send(Endpoint, endpoint_id=pk)
