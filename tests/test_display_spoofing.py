"""Display spoofing: a right-to-left override (U+202E) or zero-width characters in text a
merchant typed (webhook descriptions, key, client and inspector names) are shown visibly as
[U+XXXX], never applied: "invoice\\u202Efdp.exe" must not display as "invoiceexe.pdf"."""

from __future__ import annotations

import pytest
from django.test import Client

from accounts.models import ApiKey, Merchant, OAuthClient, User
from endpoints.models import Endpoint
from tooling.models import Inspector

SPOOFS = {
    "\u202e": "[U+202E]",  # right-to-left override
    "\u200b": "[U+200B]",  # zero-width space
    "\u2066": "[U+2066]",  # left-to-right isolate
    "\ufeff": "[U+FEFF]",  # zero-width no-break space
}


@pytest.fixture
def dashboard(owner: User) -> Client:
    client = Client()
    client.force_login(owner)
    return client


def assert_visible(html: str) -> None:
    for raw, shown in SPOOFS.items():
        assert raw not in html
        assert shown in html


def spoofed(prefix: str) -> str:
    return prefix + "".join(SPOOFS) + "fdp.exe"


def test_it_shows_invisible_characters_of_descriptions(
    dashboard: Client, merchant: Merchant
) -> None:
    endpoint = Endpoint.objects.create(
        merchant=merchant, url="http://127.0.0.1:9/hook", description=spoofed("invoice")
    )
    for path in ("/webhooks/", f"/webhooks/{endpoint.public_id}/"):
        response = dashboard.get(path)
        assert response.status_code == 200
        assert_visible(response.content.decode())


def test_it_shows_invisible_characters_of_names(dashboard: Client, merchant: Merchant) -> None:
    ApiKey.issue(merchant, spoofed("key"))
    OAuthClient.issue(merchant, spoofed("client"))
    inspector = Inspector.objects.create(merchant=merchant, name=spoofed("inspector"))
    for path in ("/api-keys/", "/inspector/", f"/inspector/{inspector.public_id}/"):
        response = dashboard.get(path)
        assert response.status_code == 200
        assert_visible(response.content.decode())


def test_it_leaves_ordinary_text_alone(dashboard: Client, merchant: Merchant) -> None:
    text = "Café ünïcode 😀 العربية"
    Endpoint.objects.create(merchant=merchant, url="http://127.0.0.1:9/hook", description=text)
    html = dashboard.get("/webhooks/").content.decode()
    assert text in html
    assert "[U+" not in html
