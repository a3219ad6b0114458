"""Login lockout (issue 14, item 1): by username from any address, a cap per address, and a
success that clears only its own username's failures."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from accounts.models import User
from tests.conftest import PASSWORD


def attempt(client: Client, username: str, password: str) -> int:
    response = client.post("/accounts/login/", {"username": username, "password": password})
    return response.status_code


def test_it_does_not_let_a_login_of_ones_own_reset_guesses_against_another_user(
    owner: User, teammate: User
) -> None:
    """Four wrong passwords for the victim, one correct log-in as oneself, again and again:
    the victim's failures add up and lock it."""
    attacker = Client(REMOTE_ADDR="203.0.113.9")
    assert [attempt(attacker, "teammate", "guess-1") for _ in range(4)] == [200] * 4
    assert attempt(attacker, "owner", PASSWORD) == 302
    attacker.post("/accounts/logout/")

    assert attempt(attacker, "teammate", "guess-2") == 429  # the fifth failure locks
    assert attempt(attacker, "teammate", PASSWORD) == 429  # even the right password
    # Locked by username: the victim's own address does not help the attacker either.
    assert attempt(Client(REMOTE_ADDR="198.51.100.20"), "teammate", PASSWORD) == 429


def test_it_locks_a_username_whatever_the_address(owner: User) -> None:
    for n in range(5):
        attempt(Client(REMOTE_ADDR=f"203.0.113.{n}"), "owner", "wrong")
    assert attempt(Client(REMOTE_ADDR="198.51.100.7"), "owner", PASSWORD) == 429


def test_it_caps_failures_from_one_address_across_usernames(
    owner: User, settings: pytest.FixtureRequest
) -> None:
    settings.LOGIN_ADDRESS_FAILURE_LIMIT = 6
    guesser = Client(REMOTE_ADDR="203.0.113.50")
    # Two guesses for each of three usernames: none reaches 5, the address reaches 6.
    codes = [attempt(guesser, name, "wrong") for name in ("a", "a", "b", "b", "c", "c")]
    assert codes == [200] * 5 + [429]
    assert attempt(guesser, "owner", PASSWORD) == 429
    # Another address is not affected.
    assert attempt(Client(REMOTE_ADDR="198.51.100.8"), "owner", PASSWORD) == 302


def test_it_shows_a_page_saying_when_to_try_again(owner: User) -> None:
    client = Client(REMOTE_ADDR="203.0.113.77")
    for _ in range(5):
        attempt(client, "owner", "wrong")
    response = client.post("/accounts/login/", {"username": "owner", "password": PASSWORD})
    assert response.status_code == 429
    page = response.content.decode()
    assert re.search(r"Too many attempts: try again in 1[45] minutes\.", page), page
    assert int(response["Retry-After"]) in range(14 * 60, 15 * 60 + 1)
    assert "_auth_user_id" not in client.session


def test_it_clears_only_the_own_failures_on_success(owner: User) -> None:
    client = Client(REMOTE_ADDR="203.0.113.88")
    for _ in range(4):
        attempt(client, "owner", "wrong")
    assert attempt(client, "owner", PASSWORD) == 302
    client.post("/accounts/logout/")
    # The owner's own slate is clean again: four more mistakes are still allowed.
    assert [attempt(client, "owner", "wrong") for _ in range(4)] == [200] * 4
