"""Issue 16's scaling curve: what 1, 2 and 4 workers buy on PostgreSQL, and where CPU goes.

200 endpoints (4 merchants x 50: one merchant may hold only WEBHOOK_MERCHANT_SHARE of a
worker's threads) answer after 200 ms. Each run first emits a backlog with no worker running,
then starts the workers and measures from the moment all of them are registered in RQ to the
last `completed_at`. Runs with `run_worker` and with the stock `rqworker --with-scheduler`, at
the default WEBHOOK_MAX_IN_FLIGHT, then `run_worker` at 16 and 128 threads. Each run has
a CPU profile (bench/cpu.py): the workers, the PostgreSQL server, the receiver, this process,
Redis, and the machine's busy share.
"""

from __future__ import annotations

import math
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import harness
from bench.cpu import CpuProfile, postmaster_pid
from bench.harness import (
    Receiver,
    Workers,
    clean_tables,
    forget_deliveries,
    merchant_with_endpoints,
    payload,
)

ENDPOINTS = 200
MERCHANTS = 4
DELAY_MS = 200
WORKER_COUNTS = (1, 2, 4)
COMMANDS = ("run_worker", "rqworker")
# (workers, threads) of run_worker, beside the default thread count: what the setting does.
OTHER_THREADS = ((1, 16), (4, 16), (4, 128))


def expected_rate(workers: int, threads: int) -> float:
    """A guess at full speed, only to size the backlog: threads / 200 ms, ~1,000/s at most."""
    return min(workers * threads / (DELAY_MS / 1000), 1000.0)


def scaling(receiver: Receiver, quick: bool) -> dict[str, Any]:
    from django.conf import settings

    default_threads = settings.WEBHOOK_MAX_IN_FLIGHT
    run_seconds = 4 if quick else 15
    clean_tables()
    per_merchant = ENDPOINTS // MERCHANTS
    merchants = [
        merchant_with_endpoints(
            [receiver.url(f"/slow/m{m}e{n}") for n in range(per_merchant)], log_mode="full"
        )
        for m in range(MERCHANTS)
    ]
    plan = [(c, w, default_threads) for c in COMMANDS for w in WORKER_COUNTS]
    plan += [("run_worker", w, t) for w, t in OTHER_THREADS if t != default_threads]
    runs: list[dict[str, Any]] = []
    for command, workers, threads in plan:
        size = round(expected_rate(workers, threads) * run_seconds)
        try:
            runs.append(drain(receiver, merchants, command, workers, threads, size))
        except Exception as exc:  # the other runs' figures are still worth having
            error = f"{type(exc).__name__}: {exc}"
            runs.append(
                {"command": command, "workers": workers, "threads": threads, "error": error}
            )
            print(f"  scaling: {command} x{workers} ({threads} threads): {error}", flush=True)
            continue
        print(f"  scaling: {_line(runs[-1])}", flush=True)
    runs_ok = [run for run in runs if "error" not in run]
    for run in runs_ok:
        one = _find(runs_ok, run["command"], 1, run["threads"])
        if one and one["deliveries_per_second"]:
            run["ratio_to_1_worker"] = round(
                run["deliveries_per_second"] / one["deliveries_per_second"], 2
            )
    figures: dict[str, Any] = {
        "endpoints": ENDPOINTS,
        "merchants": MERCHANTS,
        "receiver_delay_ms": DELAY_MS,
        "default_threads": default_threads,
        "run_seconds_aimed_at": run_seconds,
        "runs": runs,
    }
    for command in COMMANDS:
        four = _find(runs_ok, command, 4, default_threads)
        figures[f"{command}_per_second"] = {
            str(w): (_find(runs_ok, command, w, default_threads) or {}).get("deliveries_per_second")
            for w in WORKER_COUNTS
        }
        figures[f"{command}_4_workers_ratio"] = (four or {}).get("ratio_to_1_worker")
    return figures


def _find(runs: list[dict[str, Any]], command: str, workers: int, threads: int) -> Any:
    wanted = (command, workers, threads)
    return next((r for r in runs if (r["command"], r["workers"], r["threads"]) == wanted), None)


def _line(run: dict[str, Any]) -> str:
    cpu = run["cpu"]["percent_of_machine"]
    return (
        f"{run['command']} x{run['workers']} ({run['threads']} threads): "
        f"{run['deliveries_per_second']}/s over {run['seconds']} s, "
        f"machine {run['cpu']['machine_busy_percent']}% busy "
        f"(workers {cpu['workers']}%, postgres {cpu['postgres']}%, "
        f"receiver {cpu['receiver']}%, bench {cpu['bench']}%)"
    )


def _emit_backlog(merchants: list[Any], deliveries: int) -> int:
    """Enough events that the merchants' endpoints get at least `deliveries` between them."""
    from django.db import transaction

    from deliveries import emit

    per_merchant = ENDPOINTS // MERCHANTS
    events = max(1, math.ceil(deliveries / ENDPOINTS))
    with transaction.atomic():
        for n in range(events):
            for merchant in merchants:
                emit(merchant, "inventory_levels.update", payload(n))
    return events * per_merchant * len(merchants)


def drain(
    receiver: Receiver,
    merchants: list[Any],
    command: str,
    workers: int,
    threads: int,
    deliveries: int,
) -> dict[str, Any]:
    """Emit a backlog with no worker running, then drain it with `workers` processes."""
    from deliveries import jobs
    from deliveries.models import Delivery

    forget_deliveries()
    jobs.queue().empty()  # no pump job left over from the previous run
    receiver.reset()
    t0 = time.monotonic()
    total = _emit_backlog(merchants, deliveries)
    emit_seconds = time.monotonic() - t0
    data_dir = harness.VAR / "postgres" / "data"
    redis_pid = Path(harness.VAR / "redis" / "redis.pid")
    pool = Workers(workers, command, {"WEBHOOK_MAX_IN_FLIGHT": str(threads)})
    profile = CpuProfile(
        {
            "workers": pool.pids,
            "postgres": lambda: [p for p in [postmaster_pid(data_dir)] if p],
            "receiver": lambda: [receiver.proc.pid],
            "bench": lambda: [os.getpid()],
            "redis": lambda: _pid_in(redis_pid),
        }
    )
    started = datetime.now(UTC)
    profile.start()
    timeout = 60 + 4 * total / expected_rate(workers, threads)
    deadline = time.monotonic() + timeout
    done = 0
    try:
        while time.monotonic() < deadline:
            done = Delivery.objects.filter(status="succeeded").count()
            if done >= total:
                break
            time.sleep(0.25)
        cpu = profile.stop()
    finally:
        pool.stop()
    ended = Delivery.objects.filter(completed_at__gte=started)
    last = ended.order_by("-completed_at").values_list("completed_at", flat=True).first()
    counted = ended.count()
    elapsed = (last - started).total_seconds() if last else 0.0
    stats = receiver.stats()
    first_at = stats["first_at"]
    # CPU per delivery is steadier than the rate on a shared machine; our processes' sum gives
    # the rate these cores would allow if nothing else ran on them.
    per_delivery = (
        {name: round(seconds * 1000 / counted, 2) for name, seconds in cpu["cpu_seconds"].items()}
        if counted
        else {}
    )
    cpu["ms_per_delivery"] = per_delivery
    ours = sum(per_delivery.values()) - per_delivery.get("bench", 0.0)
    cpu["rate_if_alone_on_these_cores"] = round(cpu["cores"] * 1000 / ours) if ours else None
    return {
        "command": command,
        "workers": workers,
        "threads": threads,
        "deliveries": total,
        "emit_seconds": round(emit_seconds, 1),
        "succeeded": done,
        "timed_out": done < total,
        "timeout_s": round(timeout),
        "delivered_before_all_workers_registered": total - counted if done >= total else None,
        "seconds": round(elapsed, 2),
        "deliveries_per_second": round(counted / elapsed) if elapsed > 0 else 0,
        "seconds_from_first_request": round(last.timestamp() - first_at, 2)
        if last and first_at
        else None,
        "duplicates": stats["duplicates"],
        "max_in_flight": stats["max_in_flight"],
        "cpu": cpu,
    }


def _pid_in(path: Path) -> list[int]:
    try:
        return [int(path.read_text().split()[0])]
    except (OSError, ValueError, IndexError):
        return []
