"""Dashboard forms. URL and secret rules come from endpoints.validators, shared with the API."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from django import forms
from django.db.models import QuerySet
from django.utils import timezone

from catalogue.models import Category, EventType
from deliveries import states
from endpoints.models import MAX_RATE_LIMIT, Endpoint
from endpoints.validators import (
    parse_filter,
    parse_headers,
    validate_secret,
    validate_webhook_url,
)
from lib import filters, ordering
from lib.custom_headers import keep_masked, mask_value
from lib.http import MAX_URL_LENGTH

PASSWORD_MASK = "****"

LOG_MODE_HELP = {
    Endpoint.LogMode.FULL: "Store every attempt, successful or not. Best while developing.",
    Endpoint.LogMode.ERROR: "Store only failed attempts, to investigate errors.",
    Endpoint.LogMode.NONE: "Store no attempts. Delivery status is still kept.",
}
PAYLOAD_HELP = {
    Endpoint.PayloadStyle.FULL: "The body carries the event's data.",
    Endpoint.PayloadStyle.THIN: "Only the event's id and type; fetch the data from the API.",
    Endpoint.PayloadStyle.FLAT: (
        "SalesPlay's shape: merchant_id, type, created_at and the data's own keys, "
        "all at the top level."
    ),
}
RETRY_HELP = {
    Endpoint.RetryPolicy.EXPONENTIAL: (
        "5 seconds, doubling up to 15 minutes, for up to 200 attempts within 48 hours."
    ),
    Endpoint.RetryPolicy.FIXED: "A set number of retries with a fixed cooldown between them.",
}


def _password_span(url: str) -> tuple[int, int] | None:
    """Where the basic-auth password of `url` sits, found the way `mask_url` finds it."""
    marker = url.find("://")
    if marker == -1:
        return None
    start = marker + 3
    end = min((i for i in (url.find(c, start) for c in "/?#") if i != -1), default=len(url))
    at = url.rfind("@", start, end)
    colon = url.find(":", start, at) if at != -1 else -1
    return None if colon == -1 else (colon + 1, at)


class PasswordForAnotherHost(ValueError):
    """The URL keeps the masked password but points somewhere else."""


def _origin(url: str) -> tuple[str, str, int | None] | None:
    """Scheme, host and port (the default one filled in), or None when unparseable."""
    try:
        parts = urlsplit(url)
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme.lower())
    except ValueError:
        return None
    return parts.scheme.lower(), (parts.hostname or "").lower(), port


def unmask_url(submitted: str, current: str) -> str:
    """Put the stored password back where the form shows it masked.

    The edit form never sends a basic-auth password to the browser, so a URL that comes
    back with the mask in the password position keeps the password it had, but only for
    the same scheme, host and port: the password must never go to another server.

    Raises:
        PasswordForAnotherHost: the mask is left in a URL whose address changed.
    """
    span, old = _password_span(submitted), _password_span(current)
    if span is None or old is None or submitted[span[0] : span[1]] != PASSWORD_MASK:
        return submitted
    if _origin(submitted) != _origin(current):
        raise PasswordForAnotherHost(
            "The address changed, so the saved password is not kept: type the password "
            "again (or remove user:****@)."
        )
    return submitted[: span[0]] + current[old[0] : old[1]] + submitted[span[1] :]


class ChoiceWithHelp(forms.RadioSelect):
    """Radio buttons that carry a one-line explanation per choice (`radio.data.help`)."""

    def __init__(self, help_texts: dict[str, str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.help_texts = help_texts

    def create_option(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        option = super().create_option(*args, **kwargs)
        option["help"] = self.help_texts.get(option["value"], "")
        return option


class SignedTargetForm(forms.ModelForm):
    """A form for a URL we send signed requests to: its URL (shown with the password masked,
    kept when left masked) and an optional secret of the merchant's own."""

    def clean_url(self) -> str:
        url = self.cleaned_data["url"].strip()
        if self.instance.pk:
            try:
                url = unmask_url(url, self.instance.url)
            except PasswordForAnotherHost as exc:
                raise forms.ValidationError(str(exc), code="password_for_another_host") from None
        validate_webhook_url(url)
        return url

    def clean_secret(self) -> str:
        secret = self.cleaned_data.get("secret", "").strip()
        if secret:
            validate_secret(secret)
        return secret

    def save(self, commit: bool = True) -> Any:
        target = super().save(commit=False)
        if self.cleaned_data.get("secret"):
            target.secret = self.cleaned_data["secret"]
        if commit:
            target.save()
            self.save_m2m()
        return target


FILTER_HELP = (
    "Only events whose data match are sent to this webhook. A JSON object of field to value "
    'or to operators, e.g. {"outlet": {"$in": ["Main", "Airport"]}, "total": {"$gte": 100000}}. '
    "Operators: $eq $neq $gt $gte $lt $lte $in $nin $exist $regex, and $and / $or with a list "
    'of filters. Nested fields take dots ("customer.tier"); "items.$.sku" means any item. '
    "Leave empty to send every event."
)
HEADERS_HELP = (
    "Sent with every delivery, one per line as Name: value (at most 20), e.g. an API key "
    "your receiver wants. Values are stored encrypted and shown masked: leave a masked line "
    "as it is to keep its value."
)

RATE_LIMIT_HELP = (
    f"At most this many deliveries per second to this webhook (1 to {MAX_RATE_LIMIT}), "
    "retries included, however many workers send. When more are due, they wait their turn "
    "and go out at this pace. A test send is never held back. Leave empty for no limit."
)
ORDERING_KEY_HELP = (
    "A field of the event's data, e.g. code for products or number for invoices: deliveries "
    "whose events have the same value there go one at a time, in the order the events "
    "happened, so your receiver never gets an older update after a newer one. Nested fields "
    "take dots (invoice.number, lines.0.sku). A delivery that keeps failing holds back only "
    "its own value; events without the field are not ordered. A change applies to events "
    "from then on. Leave empty for no ordering."
)


def headers_as_text(headers: dict[str, str]) -> str:
    """The headers as the form shows them: one `Name: ****` line each, values masked."""
    return "\n".join(f"{name}: {mask_value(value)}" for name, value in headers.items())


def headers_from_text(text: str) -> list[dict[str, str]]:
    """`Name: value` lines as name/value pairs (duplicates kept, for validation to name)."""
    pairs = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        name, colon, value = line.partition(":")
        if not colon:
            raise forms.ValidationError(
                f"Line {number} is not Name: value.", code="invalid_headers"
            )
        pairs.append({"name": name.strip(), "value": value.strip()})
    return pairs


class EndpointForm(SignedTargetForm):
    url = forms.CharField(
        label="Webhook URL",
        max_length=MAX_URL_LENGTH,
        widget=forms.URLInput(attrs={"placeholder": "https://example.com/webhooks/pos"}),
        help_text=(
            "Where we POST events. For HTTP basic auth, include user:password@ "
            "(the password is never shown again)."
        ),
    )
    event_types = forms.ModelMultipleChoiceField(
        label="Events",
        queryset=EventType.objects.filter(is_active=True).select_related("category"),
        widget=forms.CheckboxSelectMultiple,
        # None checked means every event, including types added later (Svix's convention).
        required=False,
        help_text="Leave all unchecked to get every event, including ones added later.",
    )
    secret = forms.CharField(
        label="Signing secret",
        required=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="Leave empty and we generate a strong one (recommended).",
    )
    filter = forms.CharField(
        label="Filter",
        required=False,
        widget=forms.Textarea(attrs={"rows": 4, "spellcheck": "false", "class": "code"}),
        help_text=FILTER_HELP,
    )
    headers = forms.CharField(
        label="Custom headers",
        required=False,
        widget=forms.Textarea(
            attrs={"rows": 3, "spellcheck": "false", "autocomplete": "off", "class": "code"}
        ),
        help_text=HEADERS_HELP,
    )
    # "Test filter": which of the merchant's latest events to try the filter on. Not a
    # ChoiceField: a type retired while the page was open must not block saving the webhook.
    filter_event_type = forms.CharField(
        label="Your last event of type", required=False, widget=forms.Select
    )
    # SalesPlay: "will send a sample POST request to verify that your webhook URL is working".
    send_test = forms.BooleanField(
        label="Send a test now",
        required=False,
        initial=True,
        help_text="A webhook.test event goes to the URL on save; the answer shows next.",
    )

    class Meta:
        model = Endpoint
        fields = [
            "url",
            "description",
            "category",
            "event_types",
            "log_mode",
            "payload_style",
            "retry_policy",
            "fixed_retries",
            "fixed_cooldown_seconds",
            "timeout_seconds",
            "rate_limit",
            "ordering_key",
        ]
        labels = {
            "payload_style": "Payload",
            "fixed_retries": "Retries",
            "fixed_cooldown_seconds": "Cooldown (seconds)",
            "timeout_seconds": "Timeout (seconds)",
            "rate_limit": "Rate limit (per second)",
            "ordering_key": "Ordering key",
        }
        help_texts = {
            "description": "A note to tell your webhooks apart, up to 500 characters.",
            "category": "Used to organise your webhooks.",
            "fixed_retries": "Fixed policy: how many times to retry after the first attempt.",
            "fixed_cooldown_seconds": "Fixed policy: seconds between retries.",
            "timeout_seconds": "We wait at most this long for an answer (1 to 30 seconds).",
            "rate_limit": RATE_LIMIT_HELP,
            "ordering_key": ORDERING_KEY_HELP,
        }
        widgets = {
            "log_mode": ChoiceWithHelp(LOG_MODE_HELP),
            "payload_style": ChoiceWithHelp(PAYLOAD_HELP),
            "retry_policy": ChoiceWithHelp(RETRY_HELP),
            "description": forms.TextInput(),
            "ordering_key": forms.TextInput(
                attrs={"placeholder": "code", "spellcheck": "false", "class": "code"}
            ),
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        typed = kwargs.get("initial") or {}  # what "Test filter" gives back as it was
        super().__init__(*args, **kwargs)
        self.fields["category"].empty_label = "No category"
        self.fields["category"].queryset = Category.objects.all()
        # No maxlength in the page: the browser cut a longer pasted description at 500
        # characters without a word. The form says it is too long instead, and saves nothing.
        self.fields["description"].widget.attrs.pop("maxlength", None)
        if self.instance.pk:
            # Only a new webhook takes a secret of the merchant's choosing; after that the
            # secret changes by rotation, which keeps the old one signing for a while.
            del self.fields["secret"]
            shown = {
                "url": self.instance.masked_url,
                "filter": json.dumps(self.instance.filter, indent=2)
                if self.instance.filter
                else "",
                "headers": headers_as_text(self.instance.headers),
            }
            first_type = self.instance.event_types.order_by("name").first()
            if first_type is not None:
                shown["filter_event_type"] = first_type.name  # what the filter will see first
            for name, value in shown.items():
                if name not in typed:
                    self.initial[name] = value
        self.fields["filter_event_type"].widget.choices = [
            (t.name, t.name)
            for t in EventType.objects.filter(is_active=True).exclude(name="webhook.test")
        ]

    def clean_filter(self) -> dict[str, Any] | None:
        return parse_filter(self.cleaned_data.get("filter", ""))

    def clean_ordering_key(self) -> str:
        try:
            return ordering.clean_key(self.cleaned_data.get("ordering_key", "")) or ""
        except ordering.OrderingKeyError as exc:
            raise forms.ValidationError(str(exc), code="invalid_ordering_key") from None

    def clean_headers(self) -> dict[str, str]:
        headers = parse_headers(headers_from_text(self.cleaned_data.get("headers", "")))
        return keep_masked(headers, self.instance.headers if self.instance.pk else {})

    def check_filter(self) -> dict[str, Any]:
        """Try the submitted filter on the merchant's last event of the chosen type.

        Nothing is saved: the answer is shown under the filter field.

        Returns:
            {"error": message} for a bad filter or no such event, else
            {"event": the event, "matches": bool}.
        """
        from endpoints.send_tests import latest_event

        try:
            spec = parse_filter(self.data.get("filter", ""))
        except forms.ValidationError as exc:
            return {"error": " ".join(exc.messages)}
        type_name = self.data.get("filter_event_type", "")
        event = latest_event(self.instance.merchant, type_name) if type_name else None
        if event is None:
            return {"error": f"You have no {type_name or 'such'} event yet to try it on."}
        return {
            "event": event,
            "matches": filters.matches(spec, event.data),
            "data": json.dumps(event.data, indent=2, ensure_ascii=False)[:2000],
        }

    def save(self, commit: bool = True) -> Any:
        endpoint = super().save(commit=False)
        endpoint.filter = self.cleaned_data.get("filter")
        endpoint.headers = self.cleaned_data.get("headers") or {}
        if commit:
            endpoint.save()
            self.save_m2m()
        return endpoint

    def event_groups(self) -> list[tuple[str, list[tuple[Any, EventType]]]]:
        """The Events checkboxes with their types, grouped by category in catalogue order."""
        types = {t.pk: t for t in self.fields["event_types"].queryset}  # type: ignore[attr-defined]
        groups: dict[str, list[tuple[Any, EventType]]] = {}
        for checkbox in self["event_types"]:
            event_type = types[checkbox.data["value"].value]
            groups.setdefault(event_type.category.name, []).append((checkbox, event_type))
        return list(groups.items())


class RetryFailedForm(forms.Form):
    since = forms.DateTimeField(
        label="Failed since (UTC)",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"],
        help_text="Deliveries created since then that failed or were cancelled are sent again.",
    )

    @classmethod
    def default_since(cls) -> datetime:
        return (timezone.now() - timedelta(hours=24)).replace(second=0, microsecond=0)


class DeliveryFilterForm(forms.Form):
    """The filters of a deliveries table; invalid values are simply ignored."""

    status = forms.ChoiceField(required=False, choices=[("", "All statuses"), *states.choices()])
    event_type = forms.ChoiceField(required=False, label="Event")

    def __init__(self, *args: Any, event_types: QuerySet[EventType], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["event_type"].choices = [("", "All events")] + [
            (t.name, t.name) for t in event_types
        ]
