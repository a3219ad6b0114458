"""A throw-away PgBouncer in transaction-pooling mode in front of the private cluster.

`make test-postgres` runs the whole suite through it, as production runs behind one: every
client (the tests, their worker processes and live servers) connects to PgBouncer, which
lends a server connection for one transaction at a time. Debian's `pgbouncer` binary, a
unix socket only, trust auth (the cluster trusts its socket too). Run as a script:

    python -m webhooks_project.embedded_pgbouncer start   # starts both, prints the DATABASE_URL
    python -m webhooks_project.embedded_pgbouncer stop    # stops PgBouncer, not the cluster

The URL ends in `?pgbouncer=1`, which switches the settings to what transaction pooling
needs (see webhooks_project/settings.py).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import sys
import time
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from webhooks_project import embedded_postgres

BASE_DIR = Path(__file__).resolve().parent.parent
PORT = 54339  # only names the socket file; nothing listens on TCP

# Clients hold a server connection only for a transaction, so a few dozen serve the suite's
# hundreds of client connections (64 sender threads per worker process, live servers);
# 60 per database stays well under the cluster's max_connections (200) with the `postgres`
# database's pool (test database creation) beside it.
CONFIG = """\
[databases]
* = host={pg_sockets} port={pg_port}

[pgbouncer]
listen_addr =
listen_port = {port}
unix_socket_dir = {sockets}
pidfile = {directory}/pgbouncer.pid
logfile = {directory}/log
auth_type = trust
auth_file = {directory}/userlist.txt
admin_users = postgres
stats_users = postgres
pool_mode = transaction
max_client_conn = 700
default_pool_size = 60
reserve_pool_size = 10
max_db_connections = 80
server_idle_timeout = 60
; After a failed login to the server (PostgreSQL restarting), retry after 1 s, not 15: a
; restart then costs clients seconds (docs: deploying on several machines).
server_login_retry = 1
ignore_startup_parameters = extra_float_digits,options
log_connections = 0
log_disconnections = 0
"""


def binary() -> str:
    # Debian puts it in /usr/sbin, which a non-root PATH often lacks.
    found = shutil.which("pgbouncer", path=f"{os.environ.get('PATH', '')}:/usr/sbin")
    if not found:
        sys.exit("pgbouncer not found (apt-get install pgbouncer, or `make pgbouncer`)")
    return found


def _running(pidfile: Path) -> bool:
    return embedded_postgres.running_pid(pidfile, "pgbouncer") is not None


def start(directory: Path, server_url: str) -> str:
    """Start PgBouncer (unless it runs) in front of the cluster at `server_url`.

    Returns:
        `server_url` with PgBouncer's socket and port instead of the cluster's, and the
        `pgbouncer=1` flag.
    """
    server = urlsplit(server_url)
    sockets = directory / "run"
    directory.mkdir(parents=True, exist_ok=True)
    sockets.mkdir(exist_ok=True)
    # trust still wants the user listed; the cluster itself trusts its socket.
    (directory / "userlist.txt").write_text(f'"{server.username}" ""\n')
    config = directory / "pgbouncer.ini"
    config.write_text(
        CONFIG.format(
            pg_sockets=unquote(server.hostname or ""),
            pg_port=server.port,
            port=PORT,
            sockets=sockets,
            directory=directory,
        )
    )
    if os.geteuid() == 0:
        # PgBouncer refuses to run as root, like the cluster it fronts.
        owner = pwd.getpwnam("postgres")
        for path in (directory, sockets, config, directory / "userlist.txt"):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    pidfile = directory / "pgbouncer.pid"
    if not _running(pidfile):
        # A killed PgBouncer's pid file (its pid may now be another process's) stops a new one.
        pidfile.unlink(missing_ok=True)
        # Its socket too: the wait below would take it for the new one's.
        (sockets / f".s.PGSQL.{PORT}").unlink(missing_ok=True)
        embedded_postgres.run_as_owner([binary(), "-d", "-q", str(config)])
    deadline = time.monotonic() + 30
    while not (sockets / f".s.PGSQL.{PORT}").exists():
        if time.monotonic() > deadline:
            sys.exit(f"PgBouncer did not start; see {directory / 'log'}")
        time.sleep(0.1)
    host = quote(str(sockets), safe="")
    return f"postgres://{server.username}@{host}:{PORT}{server.path}?pgbouncer=1"


def stop(directory: Path) -> None:
    pidfile = directory / "pgbouncer.pid"
    if _running(pidfile):
        pid = int(pidfile.read_text().strip())
        os.kill(pid, signal.SIGTERM)  # PgBouncer 1.18: SIGTERM shuts down at once
        deadline = time.monotonic() + 10
        while _running(pidfile) and time.monotonic() < deadline:
            time.sleep(0.1)


def main() -> None:
    var = Path(os.environ.get("VAR_DIR", BASE_DIR / "var"))
    command = sys.argv[1] if len(sys.argv) > 1 else "start"
    if command == "start":
        print(start(var / "pgbouncer", embedded_postgres.start(var / "postgres")))
    elif command == "stop":
        stop(var / "pgbouncer")
    else:
        sys.exit("usage: python -m webhooks_project.embedded_pgbouncer start|stop")


if __name__ == "__main__":
    main()
