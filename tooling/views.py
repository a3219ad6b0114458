"""Merchant tooling pages: the request inspector and the external loyalty app.

Plus `/catch/<token>/`, the inspector's public URL: no login, no CSRF, any method.
"""

from __future__ import annotations

import time

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db.models import Count, Max
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from accounts import limits
from accounts.access import merchant_for_user
from catalogue.models import Category
from endpoints.models import Endpoint
from endpoints.validators import validate_webhook_url
from lib.pages import get_for_user_or_404, keyset_page, pretty_json, query_without
from tooling import inspector as inspection
from tooling.forms import InspectorAnswerForm, InspectorForm, LoyaltyAppForm
from tooling.models import Inspector, LoyaltyAction, LoyaltyApp, LoyaltyCall
from webhooks_project.security import client_ip

REQUESTS_PAGE_SIZE = 20
CALLS_PAGE_SIZE = 20


# --- ownership helpers: one per object kind ------------------------------------------------


def _get_inspector_for_user(request: HttpRequest, public_id: str) -> Inspector:
    return get_for_user_or_404(
        Inspector.objects.select_related("merchant"),
        "inspector",
        public_id=public_id,
        merchant=merchant_for_user(request),
    )


def _get_loyalty_app_for_user(request: HttpRequest) -> LoyaltyApp:
    return get_object_or_404(LoyaltyApp, merchant=merchant_for_user(request))


# --- the inspector's public URL ---------------------------------------------------------------


@csrf_exempt
@never_cache
def catch(request: HttpRequest, token: str, rest: str | None = None) -> HttpResponse:
    """Record any request sent to an inspector and answer as its merchant chose."""
    return _unlogged(_catch(request, token))


def _unlogged(response: HttpResponse) -> HttpResponse:
    # Django logs every 4xx/5xx with its path, and the path holds the inspector's token (its
    # only credential); its 500 and 410 answers are chosen on purpose, so nothing is logged.
    response._has_been_logged = True  # type: ignore[attr-defined]
    return response


def _catch(request: HttpRequest, token: str) -> HttpResponse:
    inspector = Inspector.objects.select_related("merchant").filter(token=token).first()
    if inspector is None:
        return JsonResponse({"error": "No such inspector."}, status=404)
    wait = inspection.over_catch_rate(inspector)
    if wait is not None:  # refused before a byte of the body is read or stored
        busy = JsonResponse(
            {"error": f"Too many requests to this inspector; try again in {wait} s."},
            status=429,
        )
        busy["Retry-After"] = str(wait)
        return busy
    limit = inspection.MAX_BODY_BYTES
    too_large = JsonResponse({"error": f"The body is larger than {limit // 1024} KiB."}, status=413)
    headers = dict(request.headers)
    if inspection.header_bytes(headers) > inspection.MAX_HEADER_BYTES:
        return JsonResponse(
            {"error": f"The headers are larger than {inspection.MAX_HEADER_BYTES // 1024} KiB."},
            status=431,
        )
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        return too_large  # refused before reading a byte of it
    # Read from the stream, one byte past the limit, instead of request.body: that also
    # catches a body longer than its Content-Length claimed.
    body = request.read(limit + 1)
    if len(body) > limit:
        return too_large
    inspection.capture(
        inspector,
        method=request.method or "GET",
        path=request.get_full_path(),
        headers=headers,
        body=body,
        source=client_ip(request) or "",
    )
    reply = inspection.reply(inspector)
    if reply.delay:
        if not inspection.acquire_slow_slot():
            return JsonResponse(
                {"error": "Too many slow answers at once; answering 503 instead."}, status=503
            )
        try:
            time.sleep(reply.delay)
        finally:
            inspection.release_slow_slot()
    return JsonResponse(reply.body, status=reply.status)


# --- inspector pages --------------------------------------------------------------------------


def _render_inspectors(
    request: HttpRequest, form: InspectorForm, status: int = 200
) -> HttpResponse:
    inspectors = (
        Inspector.objects.filter(merchant=merchant_for_user(request))
        .annotate(request_count=Count("requests"), last_request_at=Max("requests__received_at"))
        .order_by("-created_at", "-id")
    )
    return render(
        request, "inspector/list.html", {"inspectors": inspectors, "form": form}, status=status
    )


@login_required
@require_safe
def inspectors(request: HttpRequest) -> HttpResponse:
    return _render_inspectors(request, InspectorForm())


@login_required
@require_POST
def create_inspector(request: HttpRequest) -> HttpResponse:
    merchant = merchant_for_user(request)
    form = InspectorForm(request.POST, instance=Inspector(merchant=merchant))
    if not form.is_valid():
        return _render_inspectors(request, form, status=400)
    inspector = form.save()
    messages.success(
        request, f"Inspector “{inspector.name}” created. Send anything to its URL to see it here."
    )
    return redirect("inspector", inspector.public_id)


def _render_inspector(
    request: HttpRequest, inspector: Inspector, answer_form: InspectorAnswerForm, status: int = 200
) -> HttpResponse:
    page = keyset_page(inspector.requests.all(), request.GET, size=REQUESTS_PAGE_SIZE)
    for item in page.items:
        item.body_pretty = pretty_json(item.body)
    return render(
        request,
        "inspector/detail.html",
        {
            "inspector": inspector,
            "catch_url": request.build_absolute_uri(inspector.path),
            "answer_form": answer_form,
            "page": page,
            "endpoints": inspector.pointing_endpoints(),
            "page_query": query_without(request, "before", "after"),
        },
        status=status,
    )


@login_required
@require_safe
def inspector(request: HttpRequest, public_id: str) -> HttpResponse:
    inspector = _get_inspector_for_user(request, public_id)
    return _render_inspector(request, inspector, InspectorAnswerForm(instance=inspector))


@login_required
@require_POST
def inspector_answer(request: HttpRequest, public_id: str) -> HttpResponse:
    inspector = _get_inspector_for_user(request, public_id)
    form = InspectorAnswerForm(request.POST, instance=inspector)
    if not form.is_valid():
        return _render_inspector(request, inspector, form, status=400)
    inspector = form.save()
    answer = inspector.get_answer_display()
    if inspector.answer == Inspector.Answer.SLOW:
        answer = f"200 OK after {inspector.slow_delay} seconds"
    messages.success(request, f"The inspector now answers {answer}.")
    return redirect("inspector", inspector.public_id)


@login_required
@require_POST
def use_inspector(request: HttpRequest, public_id: str) -> HttpResponse:
    """Create a webhook that sends every event type to this inspector.

    It subscribes to no type, which means all of them, those staff add later included:
    subscribing to today's types left out every type added afterwards.
    """
    inspector = _get_inspector_for_user(request, public_id)
    url = request.build_absolute_uri(inspector.path)
    try:
        validate_webhook_url(url)
    except ValidationError as exc:
        messages.error(
            request, f"This inspector's URL cannot be a webhook URL here: {exc.messages[0]}"
        )
        return redirect("inspector", inspector.public_id)
    try:
        with limits.adding(inspector.merchant, "webhooks"):
            endpoint = Endpoint.objects.create(
                merchant=inspector.merchant,
                url=url,
                description=f"Inspector: {inspector.name}",
                category=Category.objects.filter(slug="testing").first(),
            )
    except limits.LimitReached as exc:
        messages.error(request, str(exc))
        return redirect("inspector", inspector.public_id)
    messages.success(
        request,
        f"Webhook added: it sends every event type to inspector “{inspector.name}”, "
        "including types added later. "
        "Send it a test, then open the inspector to see the request.",
    )
    return redirect("webhook", endpoint.public_id)


@login_required
@require_safe
def confirm_clear_inspector(request: HttpRequest, public_id: str) -> HttpResponse:
    inspector = _get_inspector_for_user(request, public_id)
    return render(request, "inspector/clear.html", {"inspector": inspector})


@login_required
@require_POST
def clear_inspector(request: HttpRequest, public_id: str) -> HttpResponse:
    inspector = _get_inspector_for_user(request, public_id)
    count = inspector.clear()
    messages.success(request, f"{count} request{'' if count == 1 else 's'} deleted.")
    return redirect("inspector", inspector.public_id)


@login_required
@require_safe
def confirm_delete_inspector(request: HttpRequest, public_id: str) -> HttpResponse:
    inspector = _get_inspector_for_user(request, public_id)
    return render(
        request,
        "inspector/delete.html",
        {"inspector": inspector, "endpoints": inspector.pointing_endpoints()},
    )


@login_required
@require_POST
def delete_inspector(request: HttpRequest, public_id: str) -> HttpResponse:
    inspector = _get_inspector_for_user(request, public_id)
    name = inspector.name
    inspector.delete()
    messages.success(request, f"Inspector “{name}” deleted. Its URL now answers 404.")
    return redirect("inspectors")


# --- external apps ------------------------------------------------------------------------------


def _render_external_apps(
    request: HttpRequest,
    form: LoyaltyAppForm,
    app: LoyaltyApp | None,
    *,
    revealed_secret: bool = False,
    status: int = 200,
) -> HttpResponse:
    merchant = merchant_for_user(request)
    page = keyset_page(
        LoyaltyCall.objects.filter(merchant=merchant), request.GET, size=CALLS_PAGE_SIZE
    )
    for call in page.items:
        call.request_body_pretty = pretty_json(call.request_body)
        call.response_body_pretty = pretty_json(call.response_body)
    response = render(
        request,
        "external_apps/page.html",
        {
            "app": app,
            "form": form,
            "page": page,
            "page_query": query_without(request, "before", "after"),
            "revealed_secret": revealed_secret,
            "api_paths": [
                (reverse(f"api-loyalty-{action.value}"), action.label, app and app.enables(action))
                for action in LoyaltyAction
            ],
        },
        status=status,
    )
    if revealed_secret:
        response["Cache-Control"] = "no-store"
    return response


@login_required
@require_http_methods(["GET", "POST"])
def external_apps(request: HttpRequest) -> HttpResponse:
    merchant = merchant_for_user(request)
    app = LoyaltyApp.objects.filter(merchant=merchant).first()
    form = LoyaltyAppForm(request.POST or None, instance=app or LoyaltyApp(merchant=merchant))
    if request.method == "POST":
        if not form.is_valid():
            return _render_external_apps(request, form, app, status=400)
        saved = form.save()
        messages.success(
            request, "Loyalty app saved." if app else f"Loyalty app connected: {saved.masked_url}"
        )
        return redirect("external_apps")
    return _render_external_apps(request, form, app)


@login_required
@require_POST
@never_cache
def reveal_loyalty_secret(request: HttpRequest) -> HttpResponse:
    """Show the loyalty app's signing secret, on a POST (see views.reveal_secret for why)."""
    app = _get_loyalty_app_for_user(request)
    return _render_external_apps(request, LoyaltyAppForm(instance=app), app, revealed_secret=True)


@login_required
@require_safe
def confirm_remove_loyalty_app(request: HttpRequest) -> HttpResponse:
    app = _get_loyalty_app_for_user(request)
    return render(request, "external_apps/remove.html", {"app": app})


@login_required
@require_POST
def remove_loyalty_app(request: HttpRequest) -> HttpResponse:
    app = _get_loyalty_app_for_user(request)
    app.delete()
    messages.success(
        request,
        "Loyalty app removed. Loyalty calls from your POS get 404 until you connect one again; "
        "the call log is kept.",
    )
    return redirect("external_apps")
