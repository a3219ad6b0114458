"""The edit form's `user:****@` (issue 14, item 10): the stored password is kept only for the
same scheme, host and port, so it never goes to a new server."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.test import Client

from accounts.models import User
from catalogue.models import EventType
from endpoints.forms import PasswordForAnotherHost, unmask_url
from endpoints.models import Endpoint
from tests.conftest import Receiver

STORED = "http://shop:s3cret-pass@127.0.0.1:{port}/hook"


@pytest.fixture
def client(owner: User) -> Client:
    client = Client()
    client.force_login(owner)
    return client


def edit(client: Client, endpoint: Endpoint, url: str) -> int:
    receipts = EventType.objects.get(name="receipts.update")
    response = client.post(
        f"/webhooks/{endpoint.public_id}/edit/",
        {
            "url": url,
            "event_types": [receipts.pk],
            "log_mode": "full",
            "payload_style": "full",
            "retry_policy": "exponential",
            "fixed_retries": 1,
            "fixed_cooldown_seconds": 7,
            "timeout_seconds": 30,
        },
    )
    return response.status_code


def test_it_refuses_to_keep_the_password_for_another_host(
    client: Client, make_endpoint: Callable[..., Endpoint], receiver: Receiver
) -> None:
    port = receiver.server.server_port
    endpoint = make_endpoint(STORED.format(port=port))
    other = Receiver()
    try:
        moved = f"http://shop:****@127.0.0.2:{other.server.server_port}/hook"
        assert edit(client, endpoint, moved) == 200  # the form again, with its error
        endpoint.refresh_from_db()
        assert endpoint.url == STORED.format(port=port)
        # The same host, another port: refused as well.
        assert edit(client, endpoint, f"http://shop:****@127.0.0.1:{port + 1}/hook") == 200
        endpoint.refresh_from_db()
        assert endpoint.url == STORED.format(port=port)
    finally:
        other.stop()


def test_it_keeps_the_password_when_only_the_path_changes(
    client: Client, make_endpoint: Callable[..., Endpoint], receiver: Receiver
) -> None:
    port = receiver.server.server_port
    endpoint = make_endpoint(STORED.format(port=port))
    assert edit(client, endpoint, f"http://shop:****@127.0.0.1:{port}/other") == 302
    endpoint.refresh_from_db()
    assert endpoint.url == f"http://shop:s3cret-pass@127.0.0.1:{port}/other"


def test_it_says_why_in_the_form() -> None:
    with pytest.raises(PasswordForAnotherHost, match="type the password again"):
        unmask_url("https://u:****@evil.example/x", "https://u:pw@good.example/x")
    with pytest.raises(PasswordForAnotherHost):
        unmask_url("http://u:****@good.example/x", "https://u:pw@good.example/x")
    # The default port written out is the same port.
    assert (
        unmask_url("https://u:****@good.example:443/y", "https://u:pw@good.example/x")
        == "https://u:pw@good.example:443/y"
    )
