"""A throw-away PostgreSQL cluster under var/ for `make test-postgres`.

Debian's server binaries, a private data directory and a unix socket only (no TCP port),
so it neither needs nor touches a system-wide cluster. Run as a script:

    python -m webhooks_project.embedded_postgres start   # prints the DATABASE_URL
    python -m webhooks_project.embedded_postgres stop
"""

from __future__ import annotations

import glob
import os
import pwd
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

BASE_DIR = Path(__file__).resolve().parent.parent
PORT = 54329  # only names the socket file; nothing listens on TCP


def bindir_or_none() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    return Path(found[-1]).parent if found else None


def bindir() -> Path:
    found = bindir_or_none()
    if found is None:
        sys.exit("PostgreSQL server binaries not found (apt-get install postgresql)")
    return found


def running_pid(pidfile: Path, name: str) -> int | None:
    """The pid in `pidfile` if a process called `name` runs under it, else None.

    A run that was killed leaves its pid file behind, and after a reboot its pid may belong
    to anything: the pid alone does not say the server runs.
    """
    try:
        pid = int(pidfile.read_text().split()[0])
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError, IndexError):
        return None
    return pid if name.encode() in command else None


def is_running(directory: Path) -> bool:
    return running_pid(directory / "data" / "postmaster.pid", "postgres") is not None


def run_as_owner(args: list[str], **kwargs: object) -> subprocess.CompletedProcess[bytes]:
    # initdb and postgres refuse to run as root: drop to the `postgres` user when we are root.
    if os.geteuid() == 0:
        args = ["runuser", "-u", "postgres", "--", *args]
    return subprocess.run(args, check=True, **kwargs)  # type: ignore[call-overload]


def start(directory: Path) -> str:
    data, sockets = directory / "data", directory / "run"
    directory.mkdir(parents=True, exist_ok=True)
    sockets.mkdir(exist_ok=True)
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        for path in (directory, sockets):
            os.chown(path, owner.pw_uid, owner.pw_gid)
        # var/ is 0700 (lib/files.py); the postgres user may pass through it, not list it.
        os.chmod(directory.parent, directory.parent.stat().st_mode & 0o777 | 0o001)
    bins = bindir()
    if not (data / "PG_VERSION").exists():
        run_as_owner(
            [str(bins / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8"],
            stdout=subprocess.DEVNULL,
        )
    if not is_running(directory):
        # A killed cluster's pid file would make pg_ctl and the server refuse to start.
        # So would its socket's lock file, which names the same pid.
        (data / "postmaster.pid").unlink(missing_ok=True)
        for stale in (f".s.PGSQL.{PORT}", f".s.PGSQL.{PORT}.lock"):
            (sockets / stale).unlink(missing_ok=True)
        options = (
            f"-c listen_addresses='' -c unix_socket_directories={sockets} -p {PORT} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        run_as_owner(
            [str(bins / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(directory / "log"),
             "-w", "start"],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
    deadline = time.monotonic() + 30
    while not (sockets / f".s.PGSQL.{PORT}").exists():
        if time.monotonic() > deadline:
            sys.exit(f"PostgreSQL did not start; see {directory / 'log'}")
        time.sleep(0.1)
    return f"postgres://postgres@{quote(str(sockets), safe='')}:{PORT}/webhooks"


def stop(directory: Path) -> None:
    data = directory / "data"
    if is_running(directory):
        run_as_owner(
            [str(bindir() / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"],
            stdout=subprocess.DEVNULL,
        )


def main() -> None:
    directory = Path(os.environ.get("VAR_DIR", BASE_DIR / "var")) / "postgres"
    command = sys.argv[1] if len(sys.argv) > 1 else "start"
    if command == "start":
        print(start(directory))
    elif command == "stop":
        stop(directory)
    else:
        sys.exit("usage: python -m webhooks_project.embedded_postgres start|stop")


if __name__ == "__main__":
    main()
