"""Forms of the account pages: a new API key, a new OAuth client."""

from __future__ import annotations

from django import forms

from accounts.models import ApiKey


class OAuthClientForm(forms.Form):
    name = forms.CharField(
        label="Client name",
        max_length=100,
        help_text="What uses this client, e.g. “myPOS integration”.",
    )


class ApiKeyForm(forms.ModelForm):
    class Meta:
        model = ApiKey
        fields = ["name"]
        help_texts = {"name": "What uses this key, e.g. “Back-office sync”."}
