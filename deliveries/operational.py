"""Operational webhooks: what happens to merchants' endpoints, as events of their own.

The engine sends signals (deliveries/signals.py); the receivers here turn them into stored
events, delivered by the same engine and workers as any other:

- to the platform operator's webhooks (the endpoints of the `is_platform` merchant, made
  with `POST /api/v1/operator-webhooks` or in the admin), and
- to the merchant's own webhooks that subscribed to that type (the "Platform" category) by
  name: a webhook that takes "all events" does not get them, so nothing changes for
  merchants who did not ask.

An event is stored only when some webhook takes it. No loops: nothing about an operator
webhook is ever announced (its own failures say nothing about itself), a delivery of an
operational event that fails for good is not announced, and the endpoint an event is about
never gets that event itself. A receiver runs in the engine's thread, sometimes inside its
recording transaction, so each works in a savepoint and never raises.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models.signals import post_save, pre_delete
from django.dispatch import receiver
from django.urls import reverse

from accounts.models import Merchant
from catalogue.seed import PLATFORM_CATEGORY
from deliveries import signals
from deliveries.engine.creating import Target, create_deliveries
from deliveries.models import Delivery, Event, active_event_type
from deliveries.results import AttemptResult
from endpoints.models import Endpoint

log = logging.getLogger(__name__)

DISABLED_REASONS = {
    Endpoint.DisabledReason.GONE: "410",
    Endpoint.DisabledReason.FAILING: "failing",
    Endpoint.DisabledReason.MERCHANT: "merchant",
    Endpoint.DisabledReason.STAFF: "staff",
}


def _time(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def about(endpoint: Endpoint) -> dict[str, Any] | None:
    """The data every operational event carries, or None for an operator webhook."""
    merchant = endpoint.merchant
    if merchant.is_platform:
        return None
    return {
        "merchant_id": merchant.public_id,
        "endpoint_id": endpoint.public_id,
        "url": endpoint.masked_url,
        "link": settings.SITE_URL.rstrip("/") + reverse("webhook", args=[endpoint.public_id]),
    }


def publish(type_name: str, merchant_pk: int, subject_pk: int, data: dict[str, Any]) -> int:
    """Store the event for the operator and for the merchant, where a webhook takes it.

    Returns:
        How many deliveries were created.
    """
    created = 0
    try:
        with transaction.atomic():
            event_type = active_event_type(type_name)
            platform = Merchant.objects.filter(is_platform=True).first()
            if platform is not None:
                ids = Endpoint.objects.subscriber_ids(platform, event_type)
                created += _store(platform, type_name, data, ids)
            merchant = Merchant.objects.filter(pk=merchant_pk).first()
            if merchant is not None:
                ids = list(
                    Endpoint.objects.filter(
                        merchant=merchant, is_enabled=True, event_types=event_type
                    )
                    .exclude(pk=subject_pk)
                    .values_list("pk", flat=True)
                )
                created += _store(merchant, type_name, data, ids)
    except Exception:
        log.exception("could not publish %s about endpoint %s", type_name, subject_pk)
    return created


def _store(merchant: Merchant, type_name: str, data: dict[str, Any], ids: list[int]) -> int:
    if not ids:
        return 0
    event = Event.objects.create_event(merchant, type_name, data)
    targets: list[Target] = [(pk, "") for pk in ids]
    return len(create_deliveries(event, targets))


def announce(type_name: str, endpoint_id: int, **extra: Any) -> None:
    endpoint = Endpoint.objects.select_related("merchant").filter(pk=endpoint_id).first()
    if endpoint is None:
        return
    data = about(endpoint)
    if data is not None:
        publish(type_name, endpoint.merchant_id, endpoint.pk, {**data, **extra})


# --- the engine's signals ---------------------------------------------------------------


@receiver(signals.endpoint_disabled)
def _disabled(sender: Any, endpoint: Endpoint, reason: str, changed: int, **kwargs: Any) -> None:
    if changed:
        announce(
            "endpoint.disabled",
            endpoint.pk,
            reason=DISABLED_REASONS.get(reason, reason),
            detail=endpoint.disabled_detail,
        )


@receiver(signals.endpoint_failing)
def _failing(sender: Any, endpoint_id: int, **kwargs: Any) -> None:
    since = Endpoint.objects.filter(pk=endpoint_id).values_list("failing_since", flat=True).first()
    announce("endpoint.failing", endpoint_id, failing_since=_time(since))


@receiver(signals.breaker_opened)
def _paused(sender: Any, endpoint_ids: set[int], **kwargs: Any) -> None:
    if not endpoint_ids:
        return  # sent after every batch; most open nothing
    for pk, probe_at in Endpoint.objects.filter(pk__in=endpoint_ids).values_list(
        "pk", "breaker_probe_at"
    ):
        announce("endpoint.paused", pk, probe_at=_time(probe_at))


@receiver(signals.breaker_closing)
def _recovered(sender: Any, endpoint_ids: set[int], **kwargs: Any) -> None:
    # Sent before the breakers close: those still open now are the ones recovering.
    reopened = Endpoint.objects.filter(
        pk__in=endpoint_ids, breaker_state=Endpoint.BreakerState.OPEN
    ).values_list("pk", flat=True)
    for pk in list(reopened):
        announce("endpoint.recovered", pk)


@receiver(signals.delivery_recorded)
def _exhausted(sender: Any, results: list[AttemptResult], **kwargs: Any) -> None:
    ended = [
        r.delivery
        for r in results
        if r.delivery.status == Delivery.Status.FAILED and r.delivery.endpoint_id is not None
    ]
    if not ended:
        return
    rows = Delivery.objects.filter(pk__in=[d.pk for d in ended]).select_related(
        "event__event_type__category", "endpoint__merchant"
    )
    for delivery in rows:
        if delivery.event.event_type.category.slug == PLATFORM_CATEGORY:
            continue  # an operational event that failed for good announces nothing more
        if delivery.event.event_type.name == "webhook.test":
            continue  # a test's outcome is shown to whoever sent it, there and then
        data = about(delivery.endpoint)
        if data is None:
            continue
        data.update(
            delivery_id=delivery.public_id,
            event_id=delivery.event.public_id,
            event_type=delivery.event.event_type.name,
            attempts=delivery.attempts,
            last_status_code=delivery.last_status_code,
            last_error=delivery.last_error,
        )
        publish("delivery.exhausted", delivery.endpoint.merchant_id, delivery.endpoint_id, data)


# --- webhooks added and deleted ---------------------------------------------------------


@receiver(post_save, sender=Endpoint)
def _created(sender: Any, instance: Endpoint, created: bool, **kwargs: Any) -> None:
    if created and not kwargs.get("raw"):
        pk = instance.pk
        transaction.on_commit(lambda: announce("endpoint.created", pk))


@receiver(pre_delete, sender=Endpoint)
def _deleted(sender: Any, instance: Endpoint, **kwargs: Any) -> None:
    # Read now: after the delete (a merchant's, with all its webhooks) the rows are gone.
    try:
        data = about(instance)
    except Merchant.DoesNotExist:
        return
    if data is None:
        return
    merchant_pk, pk = instance.merchant_id, instance.pk
    transaction.on_commit(lambda: publish("endpoint.deleted", merchant_pk, pk, data))
