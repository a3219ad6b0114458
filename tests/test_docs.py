"""The README and docs/: every command in them runs as written, against `make run` for real.

`make run`'s runner (`python -m webhooks_project.run`: gunicorn, a delivery worker and the
scheduler on the embedded Redis) serves a private var/ on a free port; each `sh` block of
README.md and docs/*.md runs in bash, in this checkout, in that order, with the variables
earlier blocks set. What a reader copies from a page (an inspector's URL, an OAuth client's
id and secret) is read from the same database. A `text` block right after an `sh` block
shows what the command answers: its status lines, headers and JSON keys must be in the output.

Not run, and why: `make run` and `make test` (the runner above is `make run`, and this test is
part of `make test`); `text` and `ini` blocks are output or templates for other machines
(docs/deploying.md says so), or `make bench`, which takes 10 to 30 minutes
(docs/performance.md).
"""

from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.test_run import free_port, started_pids, wait_for
from webhooks_project import embedded_redis

BASE = Path(__file__).resolve().parent.parent
DOCS = [BASE / "README.md", *sorted((BASE / "docs").glob("*.md"))]
FENCE = re.compile(r"^( *)```(\w*)\n(.*?)^\1```\s*$", re.M | re.S)
LANGUAGES = {"sh", "text", "ini", "python", "html"}
NOT_RUN = {"make run", "make test"}
# Run by a test of their own against a live server with an operator key
# (tests/test_back_office_docs.py), not in the README's `make run` session.
RUN_ELSEWHERE = {"integrating-your-back-office.md"}
# Typed at createsuperuser's two password prompts.
STAFF_PASSWORD = "a-long-staff-password-42"


@dataclass
class Block:
    path: Path
    language: str
    code: str
    line: int

    def __str__(self) -> str:
        return f"{self.path.relative_to(BASE)}:{self.line}"


def blocks(path: Path) -> list[Block]:
    text = path.read_text()
    found = []
    for match in FENCE.finditer(text):
        indent = len(match.group(1))
        code = "\n".join(line[indent:] for line in match.group(3).splitlines())
        line = text.count("\n", 0, match.start()) + 1
        found.append(Block(path, match.group(2), code, line))
    return found


def expected_in_output(block: Block) -> list[str]:
    """What a `text` block shows that the command's output must contain, in order."""
    shown = []
    for line in block.code.splitlines():
        line = line.strip()
        if re.match(r"HTTP/1\.1 \d{3}", line):
            shown.append(" ".join(line.split()[:2]))
        elif re.match(r"[A-Z][A-Za-z-]+: \S+$", line):
            shown.append(line)
    return shown


def expected_keys(block: Block) -> set[str]:
    return set(re.findall(r'"([a-z_]+)":', block.code))


def expected_values(block: Block) -> set[str]:
    """The JSON string values a `text` block shows in full (not elided with "...")."""
    return {v for v in re.findall(r':\s*("[^"]*")', block.code) if "..." not in v}


def test_it_starts_the_readme_with_make_run_then_make_test() -> None:
    makes = [line.strip() for line in (BASE / "README.md").read_text().splitlines()]
    makes = [line for line in makes if line.startswith("make ")]
    assert makes[:2] == ["make run", "make test"]
    assert len((BASE / "README.md").read_text().splitlines()) <= 120


def test_it_tags_every_block_and_names_no_issue_and_no_run_history() -> None:
    for path in DOCS:
        for block in blocks(path):
            assert block.language in LANGUAGES, f"{block}: tag the block ({', '.join(LANGUAGES)})"
        text = path.read_text()
        assert not re.search(r"\bissue \d+|brief's|commit [0-9a-f]{7}", text, re.I), path
        for link in re.findall(r"\]\(((?:docs/)?[a-z-]+\.md)(?:#[a-z-]+)?\)", text):
            assert (path.parent / link).exists(), f"{path}: broken link {link}"


def fresh_terminal(var: Path) -> dict[str, str]:
    """A terminal in this checkout: none of the suite's settings, only where var/ is."""
    return {
        key: value
        for key, value in os.environ.items()
        if key not in ("REDIS_URL", "DJANGO_SETTINGS_MODULE", "DATABASE_URL", "SECRET_KEY", "DEBUG")
        and not key.startswith(("FIELD_ENCRYPTION", "PYTEST", "WEBHOOK_"))
    } | {"VAR_DIR": str(var)}


@pytest.fixture
def make_run(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """`make run`'s runner on a private var/ and a free port, as a fresh checkout starts it."""
    port = free_port()
    env = fresh_terminal(tmp_path) | {"PORT": str(port), "PYTHONUNBUFFERED": "1"}
    log = (tmp_path / "run.log").open("w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "webhooks_project.run"],
        cwd=BASE,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield port, tmp_path
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: it stops its processes and Redis
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.seek(0)
        for pid in started_pids(log.read()).values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        embedded_redis.stop(tmp_path / "redis")


def manage_in(env: dict[str, str], code: str) -> str:
    result = subprocess.run(
        [sys.executable, str(BASE / "manage.py"), "shell", "-v", "0", "-c", code],
        cwd=BASE,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def run_block(block: Block, env: dict[str, str], port: int, state: Path) -> tuple[str, dict]:
    """Run one `sh` block as a reader would, in bash in this checkout; returns its output and
    the environment it leaves (every assignment is exported, for the next block)."""
    code = block.code.replace("127.0.0.1:8000", f"127.0.0.1:{port}")
    script = f'set -a -euo pipefail\n{code}\nenv -0 > "{state}"\n'
    if "createsuperuser" in code:
        returncode, output = at_a_terminal(script, env)
    else:
        result = subprocess.run(
            ["bash", "-c", script],
            cwd=BASE,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=180,
        )
        returncode, output = result.returncode, result.stdout + result.stderr
    assert returncode == 0, f"{block} failed:\n{code}\n{output}"
    left = dict(item.split("=", 1) for item in state.read_text().split("\0") if "=" in item)
    return output, left


def at_a_terminal(script: str, env: dict[str, str]) -> tuple[int, str]:
    """Run bash at a terminal of its own and type the password at each password prompt
    (createsuperuser asks twice, and throws away anything typed before it asks)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        ["bash", "-c", script],
        cwd=BASE,
        env=env,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
    )
    os.close(slave)
    output = b""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the terminal closed: bash exited
                break
            if not chunk:
                break
            output += chunk
            if output.rstrip().endswith(b":") and output.rsplit(b"\n", 1)[-1].startswith(
                b"Password"
            ):
                os.write(master, f"{STAFF_PASSWORD}\n".encode())
        elif proc.poll() is not None:
            break
    os.close(master)
    try:
        returncode = proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        returncode = proc.wait()
    return returncode, output.decode(errors="replace")


def test_it_runs_every_command_of_the_readme_and_the_docs_as_written(
    make_run: tuple[int, Path],
) -> None:
    port, var = make_run
    assert wait_for(f"http://127.0.0.1:{port}/accounts/login/", timeout=90) == 200
    # A second terminal beside `make run` (PORT as `make run` was given it).
    env = fresh_terminal(var) | {"PORT": str(port)}
    # What the reader copies from the pages: the demo inspector's URL (Inspector), and the id
    # and secret of an OAuth client made on API keys.
    copied = json.loads(
        manage_in(
            env,
            "import json; from accounts.models import Merchant, OAuthClient;"
            "from tooling.models import Inspector;"
            "m = Merchant.objects.get(users__username='demo');"
            "c, secret = OAuthClient.issue(m, 'docs');"
            "i = Inspector.objects.get(merchant=m, name='Demo receiver');"
            f"print(json.dumps({{'CATCH_URL': 'http://127.0.0.1:{port}' + i.path,"
            "'CLIENT_ID': c.client_id, 'CLIENT_SECRET': secret}))",
        )
    )
    env.update(copied)

    ran = 0
    for path in DOCS:
        if path.name in RUN_ELSEWHERE:
            continue
        found = blocks(path)
        for index, block in enumerate(found):
            if block.language != "sh" or block.code.strip() in NOT_RUN:
                continue
            output, env = run_block(block, env, port, var / "block.env")
            ran += 1
            after = found[index + 1] if index + 1 < len(found) else None
            if after is None or after.language != "text":
                continue
            position = 0
            for shown in expected_in_output(after):
                found_at = output.find(shown, position)
                assert found_at >= 0, f"{block}: {shown!r} not in the output:\n{output}"
                position = found_at + len(shown)
            missing = {key for key in expected_keys(after) if f'"{key}"' not in output}
            missing |= {value for value in expected_values(after) if value not in output}
            assert not missing, f"{block}: {missing} not in the output:\n{output}"
    assert ran >= 7

    # The README's event reached the demo inspector, signed with the webhook's secret.
    deadline = time.monotonic() + 60
    received = ""
    while time.monotonic() < deadline:
        received = manage_in(
            env,
            "from tooling.models import InspectorRequest as R;"
            "print(sorted(set(R.objects.filter(body__contains='R-1001')"
            ".values_list('signature', flat=True))))",
        )
        if "valid" in received:
            break
        time.sleep(0.5)
    assert "'valid'" in received
    # The staff login the README made: in the database `make run` serves, with its password.
    assert (
        manage_in(
            env,
            "from accounts.models import User; u = User.objects.get(username='admin');"
            f"print(u.check_password('{STAFF_PASSWORD}'), u.is_staff and u.is_superuser)",
        )
        == "True True"
    )


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_it_shows_only_json_that_parses_where_it_claims_to(path: Path) -> None:
    # A JSON body in a `sh` block is sent as written: a typo would only show as a 400.
    for block in blocks(path):
        if block.language != "sh":
            continue
        for body in re.findall(r"-d '(\{.*?\})'", block.code, re.S):
            json.loads(body.replace("'\"$CATCH_URL\"'", "http://x"))
