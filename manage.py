#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys
from pathlib import Path

# Commands that talk to Redis: with REDIS_URL unset they get the embedded one, started here
# (the settings only point at its socket). migrate, check, createsuperuser ... start nothing.
REDIS_COMMANDS = {"rqworker", "rqscheduler", "rqcron", "run_worker", "runserver", "emit_event"}


def start_embedded_redis_if_needed(argv: list[str]) -> None:
    if (
        os.environ.get("REDIS_URL")
        or os.environ.get("REDIS_SENTINELS")
        or len(argv) < 2
        or argv[1] not in REDIS_COMMANDS
    ):
        return
    from webhooks_project import embedded_redis

    base = Path(__file__).resolve().parent
    var_dir = Path(os.environ.get("VAR_DIR") or base / "var")
    os.environ["REDIS_URL"] = embedded_redis.ensure_running(embedded_redis.directory_for(var_dir))


def use_make_run_environment() -> None:
    """In a checkout where `make run` ran, act on what it serves, with the same environment.

    `make run` keeps a generated SECRET_KEY (and FIELD_ENCRYPTION_KEY) under var/ and gives
    its processes DEBUG off and the demo's defaults (webhooks_project/run.py). Without them
    `manage.py createsuperuser` there would stop on the missing SECRET_KEY. Only when the
    operator set no SECRET_KEY, runs the real settings, and var/ holds `make run`'s key: a
    production machine, which sets SECRET_KEY, never reaches this, and one without a key and
    without `make run` still fails loudly. Variables set by the caller win over every default.
    """
    settings_module = os.environ.get("DJANGO_SETTINGS_MODULE", "webhooks_project.settings")
    if os.environ.get("SECRET_KEY") or settings_module != "webhooks_project.settings":
        return
    base = Path(__file__).resolve().parent
    var_dir = Path(os.environ.get("VAR_DIR") or base / "var")
    if not (var_dir / "secret_key").is_file():
        return
    from webhooks_project import run

    os.environ.update(run.local_env())


def main() -> None:
    use_make_run_environment()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webhooks_project.settings")
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    start_embedded_redis_if_needed(sys.argv)
    try:
        execute_from_command_line(sys.argv)
    except ImproperlyConfigured as exc:
        # A bad setting is the operator's to fix: one line naming it, not a traceback.
        print(f"configuration error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
