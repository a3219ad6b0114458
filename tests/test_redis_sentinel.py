"""Redis behind Sentinel: REDIS_SENTINELS and REDIS_SENTINEL_MASTER instead of REDIS_URL.

Checked in a fresh process (settings are read once). Nothing connects here: the clients
are built, and they ask the sentinels for the master on first use.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

BASE = Path(__file__).resolve().parent.parent

SHOW = """
import json, django
django.setup()
import django_rq
from django.conf import settings
from deliveries import observability

def pool(client):
    p = client.connection_pool
    return {"class": type(p).__name__, "service": getattr(p, "service_name", None),
            "db": p.connection_kwargs.get("db"), "password": p.connection_kwargs.get("password"),
            "sentinels": [c.connection_pool.connection_kwargs.get("host")
                          for c in p.sentinel_manager.sentinels]}

print(json.dumps({
    "queue": settings.RQ_QUEUES["default"],
    "rq": pool(django_rq.get_connection("default")),
    "metrics": pool(observability.redis_client()),
    "embedded": settings.EMBEDDED_REDIS_DIR is not None,
}))
"""


def settings_in_a_fresh_process(tmp_path: Path, **env: str) -> dict[str, Any]:
    full = {
        "PATH": os.environ.get("PATH", ""),
        "DJANGO_SETTINGS_MODULE": "webhooks_project.settings",
        "DEBUG": "1",
        "VAR_DIR": str(tmp_path),
        **env,
    }
    result = subprocess.run(
        [sys.executable, "-c", SHOW], env=full, capture_output=True, text=True, cwd=BASE
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_it_finds_the_redis_master_through_the_sentinels(tmp_path: Path) -> None:
    seen = settings_in_a_fresh_process(
        tmp_path,
        REDIS_SENTINELS="sentinel-a.internal:26379, sentinel-b.internal:26380",
        REDIS_SENTINEL_MASTER="webhooks",
        REDIS_SENTINEL_DB="2",
        REDIS_PASSWORD="s3cret",
    )
    assert seen["queue"] == {
        "SENTINELS": [["sentinel-a.internal", 26379], ["sentinel-b.internal", 26380]],
        "MASTER_NAME": "webhooks",
        "DB": 2,
        "PASSWORD": "s3cret",
        "DEFAULT_TIMEOUT": 900,
    }
    expected = {
        "class": "SentinelConnectionPool",
        "service": "webhooks",
        "db": 2,
        "password": "s3cret",
        "sentinels": ["sentinel-a.internal", "sentinel-b.internal"],
    }
    # The queue (django-rq) and the metrics and health checks reach the same master.
    assert seen["rq"] == expected
    assert seen["metrics"] == expected
    assert seen["embedded"] is False  # no embedded Redis is started beside them
