"""`make bench`: the delivery path measured end to end on this machine.

Everything runs on 127.0.0.1: an embedded Redis, real `run_worker` processes, gunicorn for
the emit scenario, and bench/receiver.py as the fast, slow and dead receivers. Figures are
ratios to the HTTP client's own limit measured in the same run, because the machine is
shared and noisy. Results go to var/bench/results.json (one object per scenario).

    python -m bench.run [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from bench import harness
from bench.harness import Receiver, prepare
from bench.hostile import HOSTILE_ZEROS, on_postgres
from bench.scenarios import at_rest, dashboard, emit_api, fast, isolation, limit, memory, slow

TARGETS = {
    "fast_1_worker": ("ratio_to_limit", ">=", 0.6),
    "fast_2_workers": ("ratio_to_limit", ">=", 1.0),
    "slow": ("deliveries_per_second", ">=", 150),
    "isolation": ("healthy_p99_ms", "<=", 1000),
    "latency_at_rest": ("p99_ms", "<=", 100),
    "emit": ("events_per_second", ">=", 300),
    "dashboard": ("webhook_detail_ms", "<=", 200),
    "memory": ("growth_percent", "<=", 10),
    "hostile_neighbour": ("innocent_p99_ms", "<=", 1000),
}
# The hostile neighbour's other promises: each of these figures must be 0.


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smaller runs, for trying changes")
    parser.add_argument("--only", default="", help="comma-separated scenario names")
    parser.add_argument(
        "--database",
        choices=["sqlite", "postgres"],
        default="sqlite",
        help="postgres: the private cluster of `make test-postgres` (hostile_neighbour only)",
    )
    args = parser.parse_args()
    q = args.quick
    only = set(filter(None, args.only.split(",")))
    if args.database == "postgres":
        only = {"hostile_neighbour"}
    prepare(args.database)
    receiver = Receiver()
    results: dict[str, Any] = {
        "machine": {"cores": os.cpu_count(), "python": sys.version.split()[0]}
    }
    started = time.monotonic()
    limit_seconds = 3 if q else 5
    lim = limit(receiver, limit_seconds)
    results["limit"] = lim
    print(f"limit: {lim['requests_per_second']} requests/s", flush=True)
    plan: list[tuple[str, Any]] = [
        ("fast_1_worker", lambda: fast(receiver, 1, 500 if q else 2000, 10, limit_seconds)),
        ("fast_2_workers", lambda: fast(receiver, 2, 500 if q else 2000, 10, limit_seconds)),
        ("slow", lambda: slow(receiver, 25 if q else 100, 40)),
        ("isolation", lambda: isolation(receiver, 2000, 50 if q else 200)),
        ("latency_at_rest", lambda: at_rest(receiver, 50 if q else 200)),
        ("emit", lambda: emit_api(receiver, 500 if q else 2000, 8)),
        ("dashboard", lambda: dashboard(100_000 if q else 1_000_000)),
        ("memory", lambda: memory(receiver, 2_000 if q else 10_000, 10)),
        ("hostile_neighbour", lambda: on_postgres(receiver, q)),
    ]
    try:
        for name, scenario in plan:
            if only and name not in only:
                continue
            t0 = time.monotonic()
            results[name] = scenario()
            results[name]["scenario_seconds"] = round(time.monotonic() - t0, 1)
            print(f"{name}: {json.dumps(results[name])}", flush=True)
    finally:
        receiver.stop()
        from webhooks_project import embedded_redis

        embedded_redis.stop(harness.VAR / "redis")
        if args.database == "postgres":
            from webhooks_project import embedded_postgres

            embedded_postgres.stop(harness.VAR / "postgres")
    results["total_seconds"] = round(time.monotonic() - started, 1)
    (harness.VAR / "results.json").write_text(json.dumps(results, indent=2))
    print("\n| scenario | figure | target | met |\n|---|---|---|---|")
    for name, (key, op, target) in TARGETS.items():
        if name not in results:
            continue
        value = results[name][key]
        met = value >= target if op == ">=" else value <= target
        print(f"| {name} | {key} = {value} | {op} {target} | {'yes' if met else 'NO'} |")
    for key in HOSTILE_ZEROS if "hostile_neighbour" in results else ():
        value = results["hostile_neighbour"][key]
        print(f"| hostile_neighbour | {key} = {value} | == 0 | {'yes' if value == 0 else 'NO'} |")
    print(f"\nwritten to {harness.VAR / 'results.json'} in {results['total_seconds']} s")


if __name__ == "__main__":
    main()
