"""schemathesis against the running API: every operation, generated inputs, checked responses.

The API runs in this process (pytest-django's live server, a real HTTP server); the
schemathesis command line drives it from a subprocess, as it would any deployed API.
"""

from __future__ import annotations

import ipaddress
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from accounts.models import ApiKey, Merchant, OperatorKey
from catalogue.models import EventType
from endpoints.models import Endpoint
from lib import http

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def loopback_only(monkeypatch: pytest.MonkeyPatch, settings: Any) -> None:
    # Whatever URL the generator invents, nothing may leave this machine: every host
    # resolves to loopback, and no address counts as public (only 127/8 and ::1 are allowed).
    monkeypatch.setattr(http, "resolve", lambda host, port: [ipaddress.ip_address("127.0.0.1")])
    monkeypatch.setattr(http, "is_public_address", lambda ip: False)


@pytest.mark.parametrize("credential", ["merchant", "operator"])
def test_it_conforms_to_its_openapi_schema(
    live_server: Any,
    merchant: Merchant,
    loopback_only: None,
    settings: Any,
    tmp_path: Path,
    credential: str,
) -> None:
    settings.API_RATE_LIMIT = (1_000_000, 60)
    settings.OPERATOR_API_RATE_LIMIT = (1_000_000, 60)
    settings.PORTAL_LINK_RATE_LIMIT = (1_000_000, 60)
    settings.PORTAL_FRAME_ANCESTORS = ["https://backoffice.example"]
    if credential == "merchant":
        headers = ["--header", f"Authorization: Bearer {ApiKey.issue(merchant, 'schemathesis')[1]}"]
    else:
        # The platform's key acting for the merchant: the merchants API and every merchant path.
        headers = [
            "--header",
            f"Authorization: Bearer {OperatorKey.issue('schemathesis')[1]}",
            "--header",
            f"Merchant-Id: {merchant.public_id}",
        ]
    endpoint = Endpoint.objects.create(merchant=merchant, url="http://127.0.0.1:9/hook")
    endpoint.event_types.set(EventType.objects.filter(name="receipts.update"))
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "schemathesis"),
            "run",
            f"{live_server.url}/api/v1/openapi.json",
            *headers,
            "--max-examples",
            "10",
            # Our validation goes beyond what a schema can say (the URL must resolve to an
            # allowed address, the category must exist), so a schema-valid request may
            # rightly get a 400: every other check runs.
            "--exclude-checks",
            "positive_data_acceptance",
            "--request-timeout",
            "10",
            "--seed",
            "1",
            "--generation-deterministic",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
