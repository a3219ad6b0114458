"""The operator API: the POS platform's own key manages merchants and acts for one of them
by naming it in a `Merchant-Id` header; a merchant's key never reaches another merchant."""

from __future__ import annotations

import io
import re
from typing import Any

from django.core.management import call_command
from django.test import Client
from django.urls import URLPattern, reverse

from accounts.models import ApiKey, Merchant, OperatorKey, OperatorRequestKey
from deliveries.models import Delivery, Event
from endpoints.models import Endpoint
from webhooks_project import api_urls

# Paths that only the platform's operator key reaches.
OPERATOR_ONLY = {
    "api-merchants",
    "api-merchant",
    "api-merchant-portal-links",
    "api-operator-webhooks",
    "api-operator-webhook",
}
# Paths that need no credential at all.
PUBLIC = {"api-oauth-token", "api-schema", "api-docs"}


def as_merchant(operator_key: str, merchant: Merchant) -> Client:
    return Client(
        headers={"authorization": f"Bearer {operator_key}", "merchant-id": merchant.public_id}
    )


def merchant_key_client(merchant: Merchant, **headers: str) -> Client:
    return Client(headers={"authorization": f"Bearer {ApiKey.issue(merchant, 'k')[1]}", **headers})


def test_it_creates_an_operator_key_shown_once_and_stored_hashed(db: None) -> None:
    out = io.StringIO()
    call_command("create_operator_key", "Back office", stdout=out)
    raw = out.getvalue().strip()
    assert raw.startswith("whop_")
    key = OperatorKey.objects.get()
    assert key.name == "Back office" and raw not in (key.key_hash, key.prefix)
    assert OperatorKey.objects.authenticate(raw) == key
    key.revoke()
    response = Client(headers={"authorization": f"Bearer {raw}"}).get("/api/v1/merchants")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"


def test_it_creates_reads_updates_and_deletes_merchants(operator: Client) -> None:
    created = operator.post(
        "/api/v1/merchants",
        {
            "name": "Corner Café",
            "external_id": "bo-42",
            "contact_email": "alerts@corner.example",
            "limits": {"webhooks": 5},
        },
        content_type="application/json",
    )
    assert created.status_code == 201, created.content
    body = created.json()["merchant"]
    assert body["id"].startswith("mrc_")
    assert body["external_id"] == "bo-42"
    assert body["contact_email"] == "alerts@corner.example"
    assert body["limits"] == {
        "webhooks": 5,
        "api_keys": None,
        "inspectors": None,
        "one_off_per_hour": None,
        "oauth_clients": None,
    }
    stored = Merchant.objects.get(public_id=body["id"])
    assert stored.limit("webhooks") == 5 and stored.notification_recipients() == [
        "alerts@corner.example"
    ]

    path = f"/api/v1/merchants/{body['id']}"
    assert operator.get(path).json()["merchant"]["name"] == "Corner Café"
    found = operator.get("/api/v1/merchants?external_id=bo-42").json()["merchants"]
    assert [m["id"] for m in found] == [body["id"]]

    patched = operator.patch(
        path,
        {"name": "Corner Café 2", "limits": {"webhooks": None}},
        content_type="application/json",
    )
    assert patched.status_code == 200
    assert patched.json()["merchant"]["name"] == "Corner Café 2"
    assert patched.json()["merchant"]["limits"]["webhooks"] is None
    assert patched.json()["merchant"]["external_id"] == "bo-42"

    assert operator.delete(path).status_code == 204
    assert not Merchant.objects.filter(public_id=body["id"]).exists()
    assert operator.get(path).status_code == 404


def test_it_pages_merchants_with_a_cursor(operator: Client) -> None:
    made = [Merchant.objects.create(name=f"M{n}").public_id for n in range(5)]
    seen: list[str] = []
    cursor = ""
    while True:
        page = operator.get(f"/api/v1/merchants?limit=2{cursor}").json()
        seen += [m["id"] for m in page["merchants"]]
        if not page["has_more"]:
            assert page["next_cursor"] is None
            break
        cursor = f"&after={page['next_cursor']}"
    assert seen == made
    bad = operator.get("/api/v1/merchants?after=mrc_nope")
    assert bad.status_code == 400 and "after" in bad.json()["error"]["fields"]
    assert operator.get("/api/v1/merchants?page=2").status_code == 400


def test_it_honours_the_idempotency_key_when_creating_merchants(operator: Client) -> None:
    body = {"name": "Till Shop", "external_id": "bo-7"}
    headers = {"Idempotency-Key": "create-bo-7"}
    first = operator.post(
        "/api/v1/merchants", body, content_type="application/json", headers=headers
    )
    again = operator.post(
        "/api/v1/merchants", body, content_type="application/json", headers=headers
    )
    assert first.status_code == again.status_code == 201
    assert first["Idempotent-Replayed"] == "false" and again["Idempotent-Replayed"] == "true"
    assert first.json() == again.json()
    assert Merchant.objects.count() == 1

    other = operator.post(
        "/api/v1/merchants", {"name": "Other"}, content_type="application/json", headers=headers
    )
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "idempotency_conflict"
    assert Merchant.objects.count() == 1 and OperatorRequestKey.objects.count() == 1


def test_it_refuses_bad_merchant_input_and_changes_nothing(operator: Client) -> None:
    Merchant.objects.create(name="Taken", external_id="bo-1")
    cases: list[tuple[dict[str, Any], str, int]] = [
        ({}, "name", 400),
        ({"name": "x" * 201}, "name", 400),
        ({"name": "A", "contact_email": "not-an-email"}, "contact_email", 400),
        ({"name": "A", "limits": {"webhooks": -1}}, "limits", 400),
        ({"name": "A", "external_id": "bo-1"}, "external_id", 409),
    ]
    for body, field, code in cases:
        response = operator.post("/api/v1/merchants", body, content_type="application/json")
        assert response.status_code == code, (body, response.content)
        assert field in response.json()["error"]["fields"], response.json()
    bad_key = operator.post(
        "/api/v1/merchants",
        {"name": "A"},
        content_type="application/json",
        headers={"Idempotency-Key": "spaces are not allowed"},
    )
    assert bad_key.status_code == 400
    assert Merchant.objects.count() == 1
    taken = Merchant.objects.create(name="Second")
    clash = operator.patch(
        f"/api/v1/merchants/{taken.public_id}",
        {"external_id": "bo-1", "name": "Renamed"},
        content_type="application/json",
    )
    assert clash.status_code == 409
    taken.refresh_from_db()
    assert taken.name == "Second" and taken.external_id is None


def test_it_acts_for_the_merchant_named_by_merchant_id(
    operator_key: str, merchant: Merchant, outsider_merchant: Merchant
) -> None:
    api = as_merchant(operator_key, merchant)
    created = api.post(
        "/api/v1/webhooks",
        {"payload_url": "http://127.0.0.1:9/hook"},
        content_type="application/json",
    )
    assert created.status_code == 201, created.content
    assert Endpoint.objects.get(public_id=created.json()["webhook"]["id"]).merchant == merchant
    emitted = api.post(
        "/api/v1/events", {"type": "receipts.update", "data": {}}, content_type="application/json"
    )
    assert emitted.status_code == 202
    assert Event.objects.get().merchant == merchant
    other = as_merchant(operator_key, outsider_merchant).get("/api/v1/webhooks").json()
    assert other["webhooks"] == []
    unknown = Client(
        headers={"authorization": f"Bearer {operator_key}", "merchant-id": "mrc_nope"}
    ).get("/api/v1/webhooks")
    assert unknown.status_code == 404
    assert "Merchant-Id" in unknown.json()["error"]["fields"]


def _path_for(pattern: URLPattern, objects: dict[str, Any]) -> str:
    if "public_id" not in pattern.pattern.converters:
        return reverse(pattern.name)
    owner = next(obj for prefix, obj in objects.items() if pattern.name.startswith(prefix))
    return reverse(pattern.name, kwargs={"public_id": owner.public_id})


def _api_patterns() -> list[URLPattern]:
    found = []
    for pattern in api_urls.urlpatterns:
        assert isinstance(pattern, URLPattern)
        if pattern.name and pattern.name not in PUBLIC:
            found.append(pattern)
    return found


def test_it_walks_every_api_path_with_operator_and_merchant_keys(
    operator_key: str, merchant: Merchant, outsider_merchant: Merchant
) -> None:
    endpoint = Endpoint.objects.create(merchant=merchant, url="http://127.0.0.1:9/x")
    event = Event.objects.create_event(merchant, "receipts.update", {})
    delivery = Delivery.objects.create(
        merchant=merchant, event=event, endpoint=endpoint, status="failed"
    )
    objects: dict[str, Any] = {
        "api-webhook": endpoint,
        "api-event": event,
        "api-delivery": delivery,
        "api-merchant": merchant,
        "api-operator-webhook": Endpoint.objects.create(
            merchant=Merchant.objects.platform(), url="http://127.0.0.1:9/ops"
        ),
    }
    bare_operator = Client(headers={"authorization": f"Bearer {operator_key}"})
    operator_for_outsider = as_merchant(operator_key, outsider_merchant)
    outsider_key = merchant_key_client(outsider_merchant)
    outsider_naming_owner = merchant_key_client(
        outsider_merchant, **{"merchant-id": merchant.public_id}
    )
    walked = 0
    for pattern in _api_patterns():
        path = _path_for(pattern, objects)
        for method in ("get", "post", "patch", "delete"):
            if pattern.name in OPERATOR_ONLY:
                # A merchant's key is refused on the platform's paths, whatever it names.
                response = getattr(outsider_key, method)(path, content_type="application/json")
                assert response.status_code in (403, 405), (method, path, response.status_code)
                if response.status_code == 403:
                    assert response.json()["error"]["code"] == "operator_key_required"
                continue
            response = getattr(bare_operator, method)(path, content_type="application/json")
            assert response.status_code in (400, 405), (method, path, response.status_code)
            if response.status_code == 400:
                assert response.json()["error"]["code"] == "merchant_required"
            if "public_id" in pattern.pattern.converters:
                for client in (operator_for_outsider, outsider_key):
                    response = getattr(client, method)(path, content_type="application/json")
                    assert response.status_code in (404, 405), (method, path, response.status_code)
            # A merchant key that names another merchant reaches nothing of it.
            response = getattr(outsider_naming_owner, method)(path, content_type="application/json")
            assert response.status_code in (404, 405), (method, path, response.status_code)
        walked += 1
    assert walked >= 15
    endpoint.refresh_from_db()
    delivery.refresh_from_db()
    assert endpoint.is_enabled and delivery.status == "failed"
    assert Merchant.objects.filter(pk=merchant.pk).exists()
    assert Event.objects.count() == 1 and Endpoint.objects.count() == 2


def test_it_counts_operator_requests_apart_from_merchants(
    operator_key: str, merchant: Merchant, settings: Any, redis_conn: Any
) -> None:
    settings.OPERATOR_API_RATE_LIMIT = (2, 60)
    settings.API_RATE_LIMIT = (100, 60)
    api = as_merchant(operator_key, merchant)
    assert api.get("/api/v1/webhooks").status_code == 200
    assert api.get("/api/v1/webhooks").status_code == 200
    limited = api.get("/api/v1/webhooks")
    assert limited.status_code == 429 and limited["Retry-After"]
    # The merchant's own budget was not spent by its platform.
    assert merchant_key_client(merchant).get("/api/v1/webhooks").status_code == 200


def test_it_documents_the_operator_api_in_the_openapi_schema(db: None) -> None:
    schema = Client().get("/api/v1/openapi.json").json()
    paths = schema["paths"]
    for path in (
        "/api/v1/merchants",
        "/api/v1/merchants/{public_id}",
        "/api/v1/merchants/{public_id}/portal-links",
        "/api/v1/operator-webhooks",
        "/api/v1/webhooks/{public_id}/replay",
    ):
        assert path in paths, path

    def header_names(path: str, method: str) -> set[str]:
        params = paths[path][method].get("parameters", [])
        return {p["name"] for p in params if p["in"] == "header"}

    assert "Merchant-Id" in header_names("/api/v1/webhooks", "post")
    assert "Merchant-Id" in header_names("/api/v1/events", "post")
    assert "Merchant-Id" not in header_names("/api/v1/merchants", "post")
    assert "Idempotency-Key" in header_names("/api/v1/merchants", "post")
    assert "403" in paths["/api/v1/merchants"]["get"]["responses"]


def test_it_adds_operator_keys_in_the_admin_shown_once_and_revokes_them(
    staff_client: Client,
) -> None:
    added = staff_client.post(
        "/admin/accounts/operatorkey/add/", {"name": "From the admin"}, follow=True
    )
    assert added.status_code == 200
    shown = re.search(r"whop_[A-Za-z0-9_-]+", added.content.decode())
    assert shown is not None
    key = OperatorKey.objects.get()
    assert key.name == "From the admin" and OperatorKey.objects.authenticate(shown.group(0)) == key
    listing = staff_client.get("/admin/accounts/operatorkey/").content.decode()
    assert shown.group(0) not in listing and key.key_hash not in listing
    staff_client.post(
        "/admin/accounts/operatorkey/",
        {"action": "revoke", "_selected_action": [key.pk]},
        follow=True,
    )
    assert OperatorKey.objects.authenticate(shown.group(0)) is None


def test_it_refuses_numbers_where_the_merchant_api_takes_text(operator: Client) -> None:
    response = operator.post(
        "/api/v1/merchants", {"name": 7, "external_id": 42}, content_type="application/json"
    )
    assert response.status_code == 400
    assert set(response.json()["error"]["fields"]) == {"name", "external_id"}
    assert not Merchant.objects.exists()
