"""The tables `make bench` prints: each target with SQLite and PostgreSQL side by side, and
the scaling curve with its CPU profile (see bench/run.py for the results' layout)."""

from __future__ import annotations

from typing import Any, NamedTuple


class Target(NamedTuple):
    scenario: str
    key: str
    op: str
    value: float
    source: str


TARGETS = [
    Target("fast_1_worker", "ratio_to_limit", ">=", 0.6, "issue 13"),
    Target("fast_1_worker", "ratio_to_limit", ">=", 1.0, "issue 16"),
    Target("fast_2_workers", "ratio_to_limit", ">=", 1.0, "issue 13"),
    Target("fast_2_workers", "ratio_to_limit", ">=", 1.6, "issue 16"),
    Target("slow", "deliveries_per_second", ">=", 150, "issue 13"),
    Target("isolation", "healthy_p99_ms", "<=", 1000, "issue 13"),
    Target("latency_at_rest", "p99_ms", "<=", 100, "issue 13"),
    Target("emit", "events_per_second", ">=", 300, "issue 13"),
    Target("emit", "events_per_second", ">=", 600, "issue 16"),
    Target("emit_batch", "events_per_second", ">=", 3000, "issue 16"),
    Target("dashboard", "webhook_detail_ms", "<=", 200, "issue 13"),
    Target("memory", "growth_percent", "<=", 10, "issue 13"),
    Target("hostile_neighbour", "innocent_p99_ms", "<=", 1000, "issue 13"),
    Target("hostile_neighbour", "innocent_lost", "<=", 0, "issue 13"),
    Target("hostile_neighbour", "sent_twice_while_in_flight", "<=", 0, "issue 13"),
    Target("hostile_neighbour", "failed_rq_jobs", "<=", 0, "issue 13"),
    Target("scaling", "run_worker_4_workers_ratio", ">=", 3.5, "issue 16"),
    Target("scaling", "rqworker_4_workers_ratio", ">=", 3.5, "issue 16"),
    Target("outage", "healthy_p99_ms", "<=", 1000, "capacity"),
    Target("outage", "after_outage_lost", "<=", 0, "capacity"),
    Target("slow_peers", "healthy_p99_ms", "<=", 1000, "capacity"),
    Target("crowd", "newcomer_p99_ms", "<=", 1000, "capacity"),
    Target("crowd", "drain_ratio_largest_to_smallest", ">=", 0.8, "capacity"),
    Target("database_restart", "all_written_seconds_after_restart", "<=", 30, "capacity"),
    Target("database_restart", "sent_twice", "<=", 100, "capacity"),
    Target("rate_limit", "busiest_second", "<=", 21, "delivery controls"),
    Target("rate_limit", "drain_per_second", ">=", 19, "delivery controls"),
]
DATABASES = ("sqlite", "postgres")


def _cell(figures: dict[str, Any] | None, target: Target) -> str:
    if not figures or "error" in figures:
        return "—" if not figures else "error"
    value = figures.get(target.key)
    if value is None:
        return "—"
    met = value >= target.value if target.op == ">=" else value <= target.value
    return f"{value} {'yes' if met else 'NO'}"


def targets_table(results: dict[str, Any]) -> str:
    lines = [
        "| scenario | figure | target | from | SQLite | PostgreSQL |",
        "|---|---|---|---|---|---|",
    ]
    for target in TARGETS:
        cells = [_cell(results.get(db, {}).get(target.scenario), target) for db in DATABASES]
        if cells == ["—", "—"]:
            continue
        op = "==" if target.op == "<=" and target.value == 0 else target.op
        lines.append(
            f"| {target.scenario} | {target.key} | {op} {target.value} | {target.source} | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines)


def limits_table(results: dict[str, Any]) -> str:
    """Each fast run against both one-thread loops measured right before it."""
    lines = [
        "| database | scenario | deliveries/s | requests loop | x | own sender loop | x |",
        "|---|---|---|---|---|---|---|",
    ]
    for db in DATABASES:
        for name in ("fast_1_worker", "fast_2_workers"):
            run = results.get(db, {}).get(name)
            if not run or "error" in run:
                continue
            lines.append(
                f"| {db} | {name} | {run['deliveries_per_second']} | "
                f"{run['limit_beside_requests_per_second']} | {run['ratio_to_limit']} | "
                f"{run['own_sender_beside_per_second']} | {run['ratio_to_own_sender']} |"
            )
    return "\n".join(lines) if len(lines) > 2 else ""


def scaling_table(scaling: dict[str, Any] | None) -> str:
    if not scaling or "runs" not in scaling:
        return ""
    lines = [
        "| command | threads | workers | deliveries/s | x 1 worker | machine busy | "
        "workers | postgres | receiver | bench | redis | others | CPU ms/delivery "
        "(workers + postgres) | rate if alone |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in scaling["runs"]:
        if "error" in run:
            lines.append(
                f"| {run['command']} | {run['threads']} | {run['workers']} | "
                f"error: {run['error'][:80]} |" + " |" * 10
            )
            continue
        cpu = run["cpu"]
        share, per = cpu["percent_of_machine"], cpu.get("ms_per_delivery", {})
        capacity = cpu["seconds"] * cpu["cores"]
        others = round(cpu["other_cpu_seconds"] / capacity * 100, 1) if capacity else 0
        late = " (timed out)" if run["timed_out"] else ""
        lines.append(
            f"| {run['command']} | {run['threads']} | {run['workers']} | "
            f"{run['deliveries_per_second']}{late} | {run.get('ratio_to_1_worker', '—')} | "
            f"{cpu['machine_busy_percent']}% | {share['workers']}% | {share['postgres']}% | "
            f"{share['receiver']}% | {share['bench']}% | {share['redis']}% | {others}% | "
            f"{per.get('workers', '—')} + {per.get('postgres', '—')} | "
            f"{cpu.get('rate_if_alone_on_these_cores') or '—'}/s |"
        )
    return "\n".join(lines)


def print_tables(results: dict[str, Any]) -> None:
    print("\n" + targets_table(results))
    limits = limits_table(results)
    if limits:
        print("\nFast receiver against the one-thread loops measured right before each run:")
        print(limits)
    curve = scaling_table(results.get("postgres", {}).get("scaling"))
    if curve:
        print("\nScaling on PostgreSQL (CPU as % of all cores over the run):")
        print(curve)
