"""The merchant dashboard's Webhook Management pages.

Every view is scoped to the user's merchant through one `_get_x_for_user` helper per
object kind, which answers 404 for anything else, so another merchant's objects look
exactly like objects that do not exist.
"""

from __future__ import annotations

import json

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import OuterRef, Prefetch, Q, Subquery
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.html import format_html
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from accounts import limits, outbound
from accounts.access import merchant_for_user
from catalogue.models import Category, EventType
from deliveries import engine, states, stats
from deliveries.models import Delivery
from endpoints import send_tests
from endpoints.forms import DeliveryFilterForm, EndpointForm, RetryFailedForm
from endpoints.models import Endpoint
from lib.custom_headers import mask_value
from lib.pages import get_for_user_or_404, is_inline, keyset_page, query_without, redirect_back
from lib.text import deliveries as deliveries_text

TEST_EXCERPT_CHARS = 500
# The reasons the engine disables an endpoint by itself, which the list calls "Auto-disabled".
_AUTO_REASONS = [Endpoint.DisabledReason.FAILING, Endpoint.DisabledReason.GONE]


# --- ownership helpers: one per object kind ------------------------------------------------


def _get_endpoint_for_user(request: HttpRequest, public_id: str) -> Endpoint:
    return get_for_user_or_404(
        Endpoint.objects.select_related("category"),
        "webhook",
        public_id=public_id,
        merchant=merchant_for_user(request),
    )


# --- pages ------------------------------------------------------------------------------------


@login_required
@require_safe
def index(request: HttpRequest) -> HttpResponse:
    if getattr(request.user, "merchant", None) is None and request.user.is_staff:
        return redirect("admin:index")
    return redirect("webhooks")


@login_required
@require_safe
def webhooks(request: HttpRequest) -> HttpResponse:
    merchant = merchant_for_user(request)
    categories = list(Category.objects.all())
    event_types = list(EventType.objects.filter(is_active=True).select_related("category"))
    filters = {k: request.GET.get(k, "") for k in ("category", "event", "status")}

    # "Last delivery" is the outcome of the last attempt, not the newest delivery (which
    # may not have been tried yet). By id, so the (endpoint, -id) index serves it.
    latest = Delivery.objects.filter(endpoint=OuterRef("pk"), attempts__gt=0).order_by("-id")
    qs = (
        Endpoint.objects.for_merchant(merchant)
        .select_related("category")
        .prefetch_related(Prefetch("event_types", EventType.objects.order_by("name")))
        .annotate(
            last_attempt_at=Subquery(latest.values("last_attempt_at")[:1]),
            last_attempt_status=Subquery(latest.values("status")[:1]),
            last_attempt_code=Subquery(latest.values("last_status_code")[:1]),
            last_attempt_error=Subquery(latest.values("last_error")[:1]),
        )
    )
    has_any = qs.exists()
    if filters["category"]:
        qs = qs.filter(category__slug=filters["category"])
    if filters["event"]:
        # A webhook with no subscribed types gets every event, so it matches any type.
        qs = qs.filter(Q(event_types__name=filters["event"]) | Q(event_types__isnull=True))
    # A paused webhook is shown as "Paused", not "Enabled": the filter follows the badge.
    paused = Q(is_enabled=True, breaker_state=Endpoint.BreakerState.OPEN)
    if filters["status"] == "enabled":
        qs = qs.filter(is_enabled=True).exclude(paused)
    elif filters["status"] == "paused":
        qs = qs.filter(paused)
    elif filters["status"] == "disabled":
        qs = qs.filter(is_enabled=False).exclude(disabled_reason__in=_AUTO_REASONS)
    elif filters["status"] == "auto-disabled":
        qs = qs.filter(is_enabled=False, disabled_reason__in=_AUTO_REASONS)
    endpoints = list(qs.distinct())
    day = stats.last_24_hours([e.pk for e in endpoints])
    for endpoint in endpoints:
        endpoint.day = day[endpoint.pk]
        endpoint.held = _held(endpoint)
    return render(
        request,
        "webhooks/list.html",
        {
            "endpoints": endpoints,
            "has_any": has_any,
            "filters": filters,
            "filtered": any(filters.values()),
            "categories": categories,
            "event_types": event_types,
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def add_webhook(request: HttpRequest) -> HttpResponse:
    merchant = merchant_for_user(request)
    form = EndpointForm(request.POST or None, instance=Endpoint(merchant=merchant))
    if "check_filter" in request.POST:
        return _render_form(request, form, None)
    if request.method == "POST" and form.is_valid():
        try:
            with limits.adding(merchant, "webhooks"):
                endpoint = form.save()
        except limits.LimitReached as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Webhook added: {endpoint.masked_url}")
            _test_on_save(request, endpoint, form)
            return redirect("webhook", endpoint.public_id)
    return _render_form(request, form, None)


def _render_form(
    request: HttpRequest, form: EndpointForm, endpoint: Endpoint | None
) -> HttpResponse:
    """The add/edit form; after "Test filter", with the filter tried on the chosen event
    and the rest of what was typed kept as it was, nothing saved and no errors shown."""
    context: dict[str, object] = {"form": form, "endpoint": endpoint}
    if "check_filter" in request.POST:
        context["filter_check"] = form.check_filter()
        context["form"] = EndpointForm(
            instance=form.instance, initial=_typed(form, request), prefix=form.prefix
        )
    return render(request, "webhooks/form.html", context)


def _typed(form: EndpointForm, request: HttpRequest) -> dict[str, object]:
    """What was typed in the form, as initial values of an unbound copy of it."""
    typed: dict[str, object] = {}
    for name in form.fields:
        if name == "secret":
            continue  # never sent back to the browser
        if name == "event_types":
            typed[name] = request.POST.getlist(name)
        elif name == "send_test":
            typed[name] = bool(request.POST.get(name))
        elif name in request.POST:
            typed[name] = request.POST.get(name)
    return typed


def _test_on_save(request: HttpRequest, endpoint: Endpoint, form: EndpointForm) -> None:
    """SalesPlay sends a sample POST on setup: "Send a test now", with its outcome next page."""
    if not form.cleaned_data.get("send_test"):
        return
    if not endpoint.is_enabled:
        messages.info(request, "No test was sent: this webhook is disabled.")
        return
    try:
        with outbound.merchant_slot(endpoint.merchant):
            delivery = engine.send_test(endpoint)
    except outbound.Busy as exc:
        messages.error(request, f"No test was sent: {exc}")
        return
    summary = _test_summary(endpoint, delivery)
    if delivery.status == Delivery.Status.SUCCEEDED:
        messages.success(request, summary)
    else:
        messages.error(request, summary)


@login_required
@require_http_methods(["GET", "POST"])
def edit_webhook(request: HttpRequest, public_id: str) -> HttpResponse:
    endpoint = _get_endpoint_for_user(request, public_id)
    form = EndpointForm(request.POST or None, instance=endpoint)
    if "check_filter" in request.POST:
        return _render_form(request, form, endpoint)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, "Webhook saved.")
        _test_on_save(request, endpoint, form)
        return redirect("webhook", endpoint.public_id)
    return _render_form(request, form, endpoint)


def _custom_headers(endpoint: Endpoint, *, revealed: bool) -> list[tuple[str, str]]:
    """The custom headers as the page shows them: values masked unless revealed."""
    return [
        (name, value if revealed else mask_value(value)) for name, value in endpoint.headers.items()
    ]


def _held(endpoint: Endpoint) -> int:
    """Everything a pause holds back, whenever it was created; counted only while paused."""
    if not endpoint.is_paused:
        return 0
    return Delivery.objects.filter(endpoint=endpoint, status=Delivery.Status.PENDING).count()


def _render_detail(
    request: HttpRequest,
    endpoint: Endpoint,
    *,
    revealed_secret: bool = False,
    revealed_headers: bool = False,
) -> HttpResponse:
    buckets = stats.hourly(endpoint.pk)
    day = stats.whole_window(endpoint.pk, buckets)
    # The types this endpoint gets, and the test event that any endpoint can get.
    type_choices = EventType.objects.filter(Q(endpoints=endpoint) | Q(name="webhook.test"))
    if not endpoint.event_types.exists():
        type_choices = EventType.objects.all()  # no subscribed types: it gets every event
    filter_form = DeliveryFilterForm(
        request.GET or None, event_types=type_choices.distinct().order_by("name")
    )
    # Not joined to the endpoint (SQLite then sorted all its rows); each row gets it below.
    deliveries = Delivery.objects.filter(endpoint=endpoint).select_related("event__event_type")
    if filter_form.is_valid():
        if filter_form.cleaned_data["status"]:
            deliveries = deliveries.filter(states.FILTERS[filter_form.cleaned_data["status"]])
        if filter_form.cleaned_data["event_type"]:
            type_id = (
                EventType.objects.filter(name=filter_form.cleaned_data["event_type"])
                .values_list("pk", flat=True)
                .first()
            )
            deliveries = deliveries.filter(event__event_type_id=type_id)
    page = keyset_page(deliveries, request.GET)
    for delivery in page.items:
        delivery.endpoint = endpoint
    states.note_ordering(page.items)
    since = endpoint.failing_since or endpoint.disabled_at or RetryFailedForm.default_since()
    held = _held(endpoint)
    response = render(
        request,
        "webhooks/detail.html",
        {
            "endpoint": endpoint,
            "event_types": endpoint.event_types.order_by("name"),
            "buckets": buckets,
            "day": day,
            "held": held,
            "filter_form": filter_form,
            "page": page,
            "retry_form": RetryFailedForm(initial={"since": RetryFailedForm.default_since()}),
            "enable_retry_form": RetryFailedForm(initial={"since": since}, prefix="enable"),
            "revealed_secret": revealed_secret,
            "revealed_headers": revealed_headers,
            "custom_headers": _custom_headers(endpoint, revealed=revealed_headers),
            "filter_json": json.dumps(endpoint.filter) if endpoint.filter else "",
            "secret_overlap": len(endpoint.signing_secrets()) > 1,
            "filter_query": query_without(request, "before", "after"),
            "test_types": send_tests.types_with_events(endpoint.merchant, endpoint),
        },
    )
    if revealed_secret or revealed_headers:
        response["Cache-Control"] = "no-store"
    return response


@login_required
@require_safe
def webhook(request: HttpRequest, public_id: str) -> HttpResponse:
    return _render_detail(request, _get_endpoint_for_user(request, public_id))


@login_required
@require_safe
def confirm_delete_webhook(request: HttpRequest, public_id: str) -> HttpResponse:
    endpoint = _get_endpoint_for_user(request, public_id)
    return render(request, "webhooks/delete.html", {"endpoint": endpoint})


@login_required
@require_POST
def delete_webhook(request: HttpRequest, public_id: str) -> HttpResponse:
    endpoint = _get_endpoint_for_user(request, public_id)
    label = endpoint.masked_url
    endpoint.delete()
    messages.success(request, f"Webhook deleted: {label}")
    return redirect("webhooks")


@login_required
@require_POST
def disable_webhook(request: HttpRequest, public_id: str) -> HttpResponse:
    endpoint = _get_endpoint_for_user(request, public_id)
    if endpoint.is_enabled:
        engine.disable_endpoint(endpoint, Endpoint.DisabledReason.MERCHANT)
        messages.success(
            request,
            "Webhook disabled. Deliveries waiting for it were cancelled; "
            "you can retry them after enabling it.",
        )
    else:
        messages.info(request, "This webhook was already disabled.")
    return redirect_back(request, reverse("webhook", args=[endpoint.public_id]))


@login_required
@require_POST
def enable_webhook(request: HttpRequest, public_id: str) -> HttpResponse:
    endpoint = _get_endpoint_for_user(request, public_id)
    if endpoint.is_enabled:
        messages.info(request, "This webhook was already enabled.")
        return redirect_back(request, reverse("webhook", args=[endpoint.public_id]))
    was_auto_disabled = endpoint.disabled_reason in _AUTO_REASONS
    endpoint.enable()
    retry = RetryFailedForm(request.POST, prefix="enable")
    if request.POST.get("retry") and retry.is_valid():
        count = engine.retry_failed(endpoint, retry.cleaned_data["since"])
        messages.success(request, f"Webhook enabled, and {_deliveries(count)} scheduled again.")
    elif was_auto_disabled:
        messages.success(
            request,
            "Webhook enabled. What failed while it was disabled was not retried: use "
            "“Retry all failed” on its page to send it again.",
        )
    else:
        messages.success(request, "Webhook enabled. New events will be delivered to it.")
    return redirect_back(request, reverse("webhook", args=[endpoint.public_id]))


def _deliveries(count: int) -> str:
    return deliveries_text(count)


DISABLED_TEST_MESSAGE = (
    "This webhook is disabled, so no test was sent. Enable it first: a test goes through "
    "the same path as real events."
)


@login_required
@require_POST
def send_test(request: HttpRequest, public_id: str) -> HttpResponse:
    endpoint = _get_endpoint_for_user(request, public_id)
    # Refused, not queued: a disabled webhook gets nothing, so a test would wait forever.
    if not endpoint.is_enabled:
        return _test_refused(request, endpoint, DISABLED_TEST_MESSAGE)
    # Optional: the data of the merchant's latest real event of this type, not the sample.
    type_name = request.POST.get("event_type", "")
    try:
        with outbound.merchant_slot(endpoint.merchant):
            delivery = send_tests.send_test(endpoint, type_name)
    except (send_tests.NoEventYet, outbound.Busy) as exc:
        status = 429 if isinstance(exc, outbound.Busy) else 200
        return _test_refused(request, endpoint, str(exc), status=status)
    endpoint.refresh_from_db()
    attempt = delivery.attempt_log.first()
    context = {
        "endpoint": endpoint,
        "delivery": delivery,
        "ok": delivery.status == Delivery.Status.SUCCEEDED,
        "answered": answered(delivery),
        "excerpt": attempt.response_body[:TEST_EXCERPT_CHARS] if attempt else None,
        "logged": attempt is not None,
        "from_event": type_name,
        "disabled_by_test": _disabled_by_test(endpoint, delivery),
    }
    if is_inline(request):
        # The answer appears right under the button; a flash message as well would only
        # show up later, on whatever page is loaded next.
        return render(request, "webhooks/_test_result.html", context)
    summary = _test_summary(endpoint, delivery)
    if context["ok"]:
        messages.success(request, summary)
    else:
        messages.error(request, summary)
    return redirect_back(request, reverse("webhook", args=[endpoint.public_id]))


def _test_refused(
    request: HttpRequest, endpoint: Endpoint, message: str, *, status: int = 200
) -> HttpResponse:
    if is_inline(request):
        return HttpResponse(format_html('<p class="field-error">{}</p>', message), status=status)
    messages.error(request, message)
    return redirect_back(request, reverse("webhook", args=[endpoint.public_id]))


def answered(delivery: Delivery) -> bool:
    """True when the receiver sent an HTTP answer at all.

    A timeout is recorded as 408 (DealPOS) and a refused connection with no code, both with
    the transport's message as the error; a real answer's error is only "HTTP <code>".
    """
    code = delivery.last_status_code
    return code is not None and delivery.last_error in ("", f"HTTP {code}")


def _disabled_by_test(endpoint: Endpoint, delivery: Delivery) -> bool:
    return (
        not endpoint.is_enabled
        and endpoint.disabled_reason == Endpoint.DisabledReason.GONE
        and delivery.last_status_code == 410
    )


def _test_summary(endpoint: Endpoint, delivery: Delivery) -> str:
    """One line for a flash message: what the receiver answered to a test."""
    ms = delivery.last_duration_ms or 0
    if delivery.status == Delivery.Status.SUCCEEDED:
        outcome = f"answered {delivery.last_status_code} in {ms} ms"
    elif answered(delivery):
        outcome = f"failed: it answered {delivery.last_status_code} in {ms} ms"
    else:
        outcome = f"failed: no answer ({delivery.last_error or 'no response'})"
    summary = f"Test sent to {endpoint.masked_url}: {outcome}."
    endpoint.refresh_from_db(fields=["is_enabled", "disabled_reason"])
    if _disabled_by_test(endpoint, delivery):
        summary += " The receiver answered 410 Gone, so the webhook was disabled."
    elif delivery.status == Delivery.Status.PENDING:
        summary += " It will be retried by the webhook's retry policy."
    return summary


@login_required
@require_POST
@never_cache
def reveal_secret(request: HttpRequest, public_id: str) -> HttpResponse:
    """Show the signing secret, on a POST.

    A POST keeps the secret out of browser history, proxy and access logs and link
    prefetchers, and CSRF protection means another site cannot make the browser fetch it.
    """
    endpoint = _get_endpoint_for_user(request, public_id)
    if is_inline(request):
        return render(
            request, "webhooks/_secret.html", {"endpoint": endpoint, "revealed_secret": True}
        )
    return _render_detail(request, endpoint, revealed_secret=True)


@login_required
@require_POST
@never_cache
def reveal_headers(request: HttpRequest, public_id: str) -> HttpResponse:
    """Show the custom headers' values, on a POST (for the reasons of `reveal_secret`)."""
    endpoint = _get_endpoint_for_user(request, public_id)
    if is_inline(request):
        context = {"custom_headers": _custom_headers(endpoint, revealed=True)}
        return render(request, "webhooks/_custom_headers.html", context)
    return _render_detail(request, endpoint, revealed_headers=True)


@login_required
@require_safe
def confirm_rotate_secret(request: HttpRequest, public_id: str) -> HttpResponse:
    endpoint = _get_endpoint_for_user(request, public_id)
    return render(request, "webhooks/rotate.html", {"endpoint": endpoint})


@login_required
@require_POST
def rotate_secret(request: HttpRequest, public_id: str) -> HttpResponse:
    endpoint = _get_endpoint_for_user(request, public_id)
    endpoint.rotate_secret()
    until = endpoint.previous_secret_expires_at
    messages.success(
        request,
        "Signing secret rotated. The previous secret keeps signing too until "
        f"{until:%Y-%m-%d %H:%M} UTC: update your receiver before then.",
    )
    return redirect("webhook", endpoint.public_id)


@login_required
@require_POST
def retry_failed(request: HttpRequest, public_id: str) -> HttpResponse:
    endpoint = _get_endpoint_for_user(request, public_id)
    form = RetryFailedForm(request.POST)
    if not endpoint.is_enabled:
        messages.error(request, "This webhook is disabled: enable it to retry its deliveries.")
    elif not form.is_valid():
        messages.error(request, "Choose a valid date and time to retry from.")
    else:
        count = engine.retry_failed(endpoint, form.cleaned_data["since"])
        if count:
            messages.success(request, f"{_deliveries(count).capitalize()} scheduled again.")
        else:
            messages.info(request, "No failed deliveries since then: nothing to retry.")
    return redirect("webhook", endpoint.public_id)
