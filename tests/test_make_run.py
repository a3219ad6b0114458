"""`make run` runs the product with DEBUG off (issue 15, item 9); `DEBUG=1 make run` develops.

Users get styled 404 and 500 pages instead of Django's debug pages with the URL list, and
whitenoise serves the collected static files.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from django.template.loader import render_to_string

from tests.test_run import get, running, wait_for  # noqa: F401  (the fixture)
from webhooks_project import run


def test_it_runs_with_debug_off_unless_asked(tmp_path: Path) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("DEBUG", raising=False)
        patch.delenv("SECRET_KEY", raising=False)
        patch.delenv("FIELD_ENCRYPTION_KEY", raising=False)
        patch.setenv("VAR_DIR", str(tmp_path))
        first = run.local_env()
        again = run.local_env()
        patch.setenv("DEBUG", "1")
        debug = run.local_env()
    assert first["DEBUG"] == "0"
    assert first["SESSION_COOKIE_SECURE"] == "0" and first["SECURE_SSL_REDIRECT"] == "0"
    # Generated once, kept under var/ (private), and the same on the next start.
    assert first["SECRET_KEY"] == again["SECRET_KEY"]
    assert first["FIELD_ENCRYPTION_KEY"] == again["FIELD_ENCRYPTION_KEY"]
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600
    assert debug["DEBUG"] == "1" and "SECRET_KEY" not in debug


def test_it_has_a_styled_server_error_page(db: None) -> None:
    page = render_to_string("500.html")
    assert "Something went wrong" in page
    assert "app.css" in page


def test_it_serves_styled_404s_and_collected_static_files(running) -> None:  # noqa: F811
    _proc, port, _var, log = running
    site = f"http://127.0.0.1:{port}"
    assert wait_for(f"{site}/accounts/login/", timeout=90) == 200
    status, content_type, body = get(f"{site}/no-such-page/")
    page = body.decode()
    assert status == 404 and content_type.startswith("text/html")
    assert "Not found" in page and "POS Webhooks" in page
    assert "URLconf" not in page and "DEBUG = True" not in page
    # whitenoise serves the hashed copies collectstatic wrote; the login page links them.
    status, _, login = get(f"{site}/accounts/login/")
    css = next(part for part in login.decode().split('"') if "/static/app." in part)
    assert css != "/static/app.css", css
    status, content_type, _ = get(f"{site}{css}")
    assert status == 200 and content_type.startswith("text/css")
    log.seek(0)
    assert "DEBUG is off" in log.read()
