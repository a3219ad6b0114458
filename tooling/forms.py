"""Forms of the merchant tooling pages: the request inspector and the external loyalty app."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings

from accounts import limits
from endpoints.forms import ChoiceWithHelp, SignedTargetForm
from endpoints.models import Endpoint
from lib.http import MAX_URL_LENGTH
from tooling.inspector import SLOW_SLOTS
from tooling.models import Inspector, LoyaltyApp

ANSWER_HELP = {
    Inspector.Answer.OK: "Accept every request, as a healthy receiver does.",
    Inspector.Answer.ERROR: "Fail every request, to watch deliveries being retried.",
    Inspector.Answer.GONE: "Say the URL is gone for good: the webhook gets disabled.",
    Inspector.Answer.SLOW: "Answer 200 only after a wait, to watch deliveries time out.",
}

LOYALTY_LOG_HELP = {
    Endpoint.LogMode.FULL: "Log every call, answered or not. Best while developing.",
    Endpoint.LogMode.ERROR: "Log only failed calls: errors, timeouts and non-2xx answers.",
    Endpoint.LogMode.NONE: "Log no calls.",
}


class InspectorForm(forms.ModelForm):
    class Meta:
        model = Inspector
        fields = ["name"]
        help_texts = {"name": "To tell your inspectors apart, e.g. “Receipts try-out”."}
        widgets = {"name": forms.TextInput(attrs={"placeholder": "My test receiver"})}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["name"].required = False

    def clean(self) -> dict[str, Any]:
        # Each inspector keeps up to 100 bodies of 256 KiB: a cap on inspectors bounds the
        # storage one merchant can take.
        try:
            limits.check_room(self.instance.merchant, "inspectors")
        except limits.LimitReached as exc:
            raise forms.ValidationError(str(exc)) from None
        return super().clean()

    def save(self, commit: bool = True) -> Inspector:
        inspector = super().save(commit=False)
        if not inspector.name:
            count = Inspector.objects.filter(merchant=inspector.merchant).count()
            inspector.name = f"Inspector {count + 1}"
        if commit:
            inspector.save()
        return inspector


class InspectorAnswerForm(forms.ModelForm):
    class Meta:
        model = Inspector
        fields = ["answer", "slow_seconds"]
        labels = {"answer": "Answer with", "slow_seconds": "Wait (seconds)"}
        widgets = {"answer": ChoiceWithHelp(ANSWER_HELP)}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cap = settings.INSPECTOR_SLOW_MAX_SECONDS
        # The wait holds one of our web server's threads, so it is short: to watch a
        # timeout, the webhook's own timeout goes below it.
        # Slow answers share a few slots (tooling.inspector.SLOW_SLOTS); said here, since a
        # 503 for a burst of test sends surprised people trying the demo.
        self.fields["slow_seconds"].help_text = (
            f"We wait at most {cap} seconds. To watch a delivery time out, set your "
            f"webhook's timeout below that, e.g. {max(1, cap - 2)} seconds. At most "
            f"{SLOW_SLOTS} slow answers wait at once: requests arriving while {SLOW_SLOTS} "
            "are waiting are answered 503 at once."
        )


class LoyaltyAppForm(SignedTargetForm):
    url = forms.CharField(
        label="App URL",
        max_length=MAX_URL_LENGTH,
        widget=forms.URLInput(attrs={"placeholder": "https://loyalty.example.com/pos"}),
        help_text="We POST every enabled call to this URL, with the action in the "
        "loyalty-action header. For HTTP basic auth, include user:password@.",
    )
    secret = forms.CharField(
        label="Signing secret",
        required=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="Leave empty to keep the current secret (a new app gets a strong one).",
    )

    class Meta:
        model = LoyaltyApp
        fields = [
            "url",
            "timeout_seconds",
            "log_mode",
            "fetch_member_point",
            "order_complete",
            "validate_coupon",
        ]
        labels = {"timeout_seconds": "Timeout (seconds)"}
        help_texts = {
            "timeout_seconds": "The POS waits for the app's answer: at most 30 seconds. After "
            "that it gets a 504 and the log shows 408.",
            "fetch_member_point": "Get a member's points from your loyalty app.",
            "order_complete": "Get the reward for a transaction completed in the POS.",
            "validate_coupon": "Check that a coupon exists in your loyalty app.",
        }
        widgets = {"log_mode": ChoiceWithHelp(LOYALTY_LOG_HELP)}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.initial["url"] = self.instance.masked_url
