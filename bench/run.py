"""`make bench`: the delivery path measured end to end on this machine, on SQLite and PostgreSQL.

Everything runs on 127.0.0.1: an embedded Redis, real worker processes, gunicorn for the emit
scenarios, and bench/receiver.py as the fast, slow and dead receivers. Throughput is compared
with two one-thread loops measured in the same run (a `requests.Session` loop and the
product's own sender), because the machine is shared and noisy.

The SQLite scenarios run in this process (var/bench); then the PostgreSQL ones run in a child
process (`--database postgres`, Django being set up once per process) on the private cluster
of `make test-postgres` under var/bench-postgres, with its own Redis. Results, in
var/bench/results.json:

    {"machine": {...},
     "sqlite":   {"limit": {...}, "fast_1_worker": {...}, ...},
     "postgres": {"limit": {...}, "fast_1_worker": {...}, ..., "hostile_neighbour": {...},
                  "scaling": {...}},
     "total_seconds": N}

    python -m bench.run [--quick] [--only fast_1_worker,scaling] [--database both|sqlite|postgres]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from bench import harness
from bench.capacity import on_postgres as capacity
from bench.emit import emit_api
from bench.harness import Receiver, prepare
from bench.hostile import on_postgres
from bench.report import print_tables
from bench.scaling import scaling
from bench.scenarios import at_rest, dashboard, fast, isolation, limit, memory, slow

BOTH = ("sqlite", "postgres")
PG = ("postgres",)
Scenario = Callable[[Receiver, bool, float], dict[str, Any]]
# name, databases it runs on, the scenario given (receiver, quick, limit_seconds).
PLAN: list[tuple[str, tuple[str, ...], Scenario]] = [
    ("fast_1_worker", BOTH, lambda r, q, ls: fast(r, 1, 500 if q else 2000, 10, ls)),
    ("fast_2_workers", BOTH, lambda r, q, ls: fast(r, 2, 500 if q else 2000, 10, ls)),
    ("slow", BOTH, lambda r, q, ls: slow(r, 25 if q else 100, 40)),
    ("isolation", BOTH, lambda r, q, ls: isolation(r, 2000, 50 if q else 200)),
    ("latency_at_rest", BOTH, lambda r, q, ls: at_rest(r, 50 if q else 200)),
    ("emit", BOTH, lambda r, q, ls: emit_api(r, 500 if q else 2000, 8)),
    ("emit_batch", BOTH, lambda r, q, ls: emit_api(r, 20 if q else 100, 4, batch=100)),
    ("dashboard", BOTH, lambda r, q, ls: dashboard(100_000 if q else 1_000_000)),
    ("memory", BOTH, lambda r, q, ls: memory(r, 2_000 if q else 10_000, 10)),
    ("hostile_neighbour", PG, lambda r, q, ls: on_postgres(r, q)),
    ("scaling", PG, lambda r, q, ls: scaling(r, q)),
    ("outage", PG, lambda r, q, ls: capacity("outage", r, q)),
    ("slow_peers", PG, lambda r, q, ls: capacity("slow_peers", r, q)),
    ("crowd", PG, lambda r, q, ls: capacity("crowd", r, q)),
    ("database_restart", PG, lambda r, q, ls: capacity("database_restart", r, q)),
    ("rate_limit", PG, lambda r, q, ls: capacity("rate_limit", r, q)),
    ("claim_cost", BOTH, lambda r, q, ls: capacity("claim_cost", r, q)),
]
NAMES = [name for name, _, _ in PLAN]
CHILD_TIMEOUT = 2 * 3600  # seconds for the whole PostgreSQL run


def run_database(database: str, quick: bool, only: set[str]) -> dict[str, Any]:
    """Every selected scenario of `database`, in this process."""
    prepare(database)
    receiver = Receiver()
    results: dict[str, Any] = {}
    limit_seconds = 3 if quick else 5
    try:
        results["limit"] = limit(receiver, limit_seconds)
        print(f"{database} limit: {json.dumps(results['limit'])}", flush=True)
        for name, databases, scenario in PLAN:
            if database not in databases or (only and name not in only):
                continue
            t0 = time.monotonic()
            try:
                results[name] = scenario(receiver, quick, limit_seconds)
            except Exception as exc:  # one broken scenario must not lose the others' figures
                results[name] = {"error": f"{type(exc).__name__}: {exc}"}
            finally:
                harness.stop_leftover_workers()
            results[name]["scenario_seconds"] = round(time.monotonic() - t0, 1)
            print(f"{database} {name}: {json.dumps(results[name])}", flush=True)
    finally:
        receiver.stop()
        from webhooks_project import embedded_redis

        embedded_redis.stop(harness.VAR / "redis")
        if database == "postgres":
            from webhooks_project import embedded_postgres

            embedded_postgres.stop(harness.VAR / "postgres")
    return results


def postgres_child(quick: bool, only: str) -> dict[str, Any]:
    """The PostgreSQL run in a process of its own (this one has Django set up on SQLite)."""
    command = [sys.executable, "-m", "bench.run", "--database", "postgres", "--child"]
    command += ["--quick"] if quick else []
    command += ["--only", only] if only else []
    try:
        subprocess.run(command, cwd=harness.BASE, check=True, timeout=CHILD_TIMEOUT)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        return {"error": str(exc)}
    return json.loads((harness.VAR_POSTGRES / "results.json").read_text())["postgres"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smaller runs, for trying changes")
    parser.add_argument("--only", default="", help=f"comma-separated: {', '.join(NAMES)}")
    parser.add_argument(
        "--database",
        choices=["both", "sqlite", "postgres"],
        default="both",
        help="both (default): SQLite here, then PostgreSQL (the private cluster of "
        "`make test-postgres`) in a child process",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    only = set(filter(None, args.only.split(",")))
    if unknown := only - set(NAMES):
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")

    def wanted(database: str) -> bool:
        return any(database in dbs and (not only or name in only) for name, dbs, _ in PLAN)

    started = time.monotonic()
    results: dict[str, Any] = {
        "machine": {"cores": os.cpu_count(), "python": sys.version.split()[0]}
    }
    if args.database in ("both", "sqlite") and wanted("sqlite"):
        results["sqlite"] = run_database("sqlite", args.quick, only)
    if args.database == "both" and wanted("postgres"):
        results["postgres"] = postgres_child(args.quick, args.only)
    elif args.database == "postgres":
        results["postgres"] = run_database("postgres", args.quick, only)
    results["total_seconds"] = round(time.monotonic() - started, 1)
    harness.VAR.mkdir(parents=True, exist_ok=True)
    (harness.VAR / "results.json").write_text(json.dumps(results, indent=2))
    if not args.child:
        print_tables(results)
        print(f"\nwritten to {harness.VAR / 'results.json'} in {results['total_seconds']} s")


if __name__ == "__main__":
    main()
