"""docs/integrating-your-back-office.md: its worked example runs as printed.

The page's shell blocks run in order with curl against the live server, its Python receiver
runs as a real process verifying signatures with the standardwebhooks library, and a real
worker delivers the operational events to it.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.test import Client

from accounts.models import Merchant
from endpoints.models import Endpoint
from tests.conftest import Receiver

pytestmark = pytest.mark.django_db(transaction=True)

DOC = Path(__file__).resolve().parent.parent / "docs" / "integrating-your-back-office.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", DOC.read_text(), flags=re.S | re.M)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert process.poll() is None, "the receiver exited"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("the receiver did not start listening")


def test_it_runs_the_worked_example_as_printed(
    live_server: Any,
    operator_key: str,
    receiver: Receiver,
    work: Callable[..., None],
    settings: Any,
    tmp_path: Path,
) -> None:
    settings.PORTAL_FRAME_ANCESTORS = ["https://backoffice.example"]
    port = free_port()
    base = live_server.url.replace("localhost", "127.0.0.1")
    script = "set -euo pipefail\n" + "\n".join(blocks("sh"))
    script += '\necho "OPS_SECRET=$OPS_SECRET"\necho "MERCHANT_ID=$MERCHANT_ID"\n'
    env = {
        "PATH": os.environ["PATH"],
        "BASE": base,
        "OPERATOR_KEY": operator_key,
        "RECEIVER_URL": f"http://127.0.0.1:{port}/operational",
        "ACCOUNTING_URL": receiver.url("/accounting"),
    }
    ran = subprocess.run(
        ["bash", "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    out = dict(
        line.split("=", 1) for line in ran.stdout.splitlines() if re.match(r"^[A-Z_]+=", line)
    )
    merchant = Merchant.objects.get(public_id=out["MERCHANT_ID"])
    assert merchant.external_id == "bo-1042" and merchant.limit("webhooks") == 10
    webhook = Endpoint.objects.get(merchant=merchant)
    assert webhook.url == receiver.url("/accounting")
    assert '"count": 0' in ran.stdout.replace('"count":0', '"count": 0')
    portal_url = re.search(r"^portal (\S+)$", ran.stdout, flags=re.M)
    assert portal_url is not None

    (tmp_path / "receiver.py").write_text(blocks("python")[0])
    process = subprocess.Popen(
        [sys.executable, str(tmp_path / "receiver.py")],
        env={**env, "OPS_SECRET": out["OPS_SECRET"], "PORT": str(port)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    threading.Thread(
        target=lambda: lines.extend(iter(process.stdout.readline, "")), daemon=True
    ).start()
    try:
        wait_for_port(port, process)
        work(until=lambda: any(line.startswith("endpoint.created") for line in lines))
    finally:
        process.terminate()
        process.wait(timeout=10)
    created = next(line for line in lines if line.startswith("endpoint.created")).split()
    assert created[1:3] == [merchant.public_id, webhook.public_id]
    assert created[3].endswith(f"/webhooks/{webhook.public_id}/")

    browser = Client()
    opened = browser.get(urlsplit(portal_url.group(1)).path)
    assert opened.status_code == 302
    assert browser.get("/webhooks/").context["user"].merchant == merchant
