"""CPU seconds per group of processes over a run, read from /proc (no psutil needed).

A group is named by its root pids: the group's figure counts every live process under them
(children of children too) plus what their reaped children used (`cutime`, `cstime`), so a
PostgreSQL backend that ended during the run still counts, in its postmaster's figure. The
machine's busy share comes from /proc/stat; whatever our groups do not explain is
`other_cpu_seconds`: other people's processes on this shared machine, and our own Redis.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

TICKS = os.sysconf("SC_CLK_TCK")


def _processes() -> dict[int, tuple[int, float]]:
    """Every process: pid -> (parent pid, CPU seconds incl. reaped children)."""
    table: dict[int, tuple[int, float]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            raw = Path(entry.path, "stat").read_text()
        except OSError:
            continue  # ended while we read
        # The command name (field 2) may hold spaces and parentheses: split after its last ")".
        fields = raw[raw.rindex(")") + 2 :].split()
        ppid = int(fields[1])
        utime, stime, cutime, cstime = (int(v) for v in fields[11:15])
        table[int(entry.name)] = (ppid, (utime + stime + cutime + cstime) / TICKS)
    return table


def _tree_seconds(
    table: dict[int, tuple[int, float]], roots: Iterable[int], others: set[int]
) -> float:
    """CPU of `roots` and their descendants, leaving out subtrees rooted at `others`."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    seen: set[int] = set()
    todo = [pid for pid in roots if pid in table]
    while todo:
        pid = todo.pop()
        if pid not in seen:
            seen.add(pid)
            todo.extend(child for child in children.get(pid, ()) if child not in others)
    return sum(table[pid][1] for pid in seen)


def _machine() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, all cores together."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (values + [0] * 8)[:8]
    busy = user + nice + system + irq + softirq + steal
    return busy / TICKS, (busy + idle + iowait) / TICKS


def postmaster_pid(data_dir: Path) -> int | None:
    """The pid of the cluster's postmaster (first line of postmaster.pid), if it runs."""
    try:
        return int((data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


class CpuProfile:
    """CPU seconds used by each group between `start()` and `stop()`.

    Args:
        groups: name -> a function giving the group's root pids (called at start and stop,
            so a group whose processes start after `start()` is still counted). A group does
            not include the subtree of another group's root.
    """

    def __init__(self, groups: dict[str, Callable[[], list[int]]]) -> None:
        self.groups = groups
        self.before: dict[str, float] = {}
        self.machine_before = (0.0, 0.0)
        self.started = 0.0

    def _sample(self) -> dict[str, float]:
        table = _processes()
        roots = {name: set(find()) for name, find in self.groups.items()}
        every = set().union(*roots.values())
        # The bench process is the parent of the workers and the receiver: each group stops
        # where another group's root starts.
        return {name: _tree_seconds(table, mine, every - mine) for name, mine in roots.items()}

    def start(self) -> None:
        self.before = self._sample()
        self.machine_before = _machine()
        self.started = time.monotonic()

    def stop(self) -> dict[str, Any]:
        after = self._sample()
        busy, total = _machine()
        elapsed = time.monotonic() - self.started
        cores = os.cpu_count() or 1
        used = {name: max(0.0, after[name] - self.before.get(name, 0.0)) for name in after}
        busy_seconds = busy - self.machine_before[0]
        total_seconds = max(1e-9, total - self.machine_before[1])
        capacity = elapsed * cores
        ours = sum(used.values())
        return {
            "seconds": round(elapsed, 2),
            "cores": cores,
            "machine_busy_percent": round(busy_seconds / total_seconds * 100, 1),
            "cpu_seconds": {name: round(value, 2) for name, value in used.items()},
            # Shares of the machine's capacity (cores x seconds), to read beside busy_percent.
            "percent_of_machine": {
                name: round(value / capacity * 100, 1) for name, value in used.items()
            },
            "other_cpu_seconds": round(max(0.0, busy_seconds - ours), 2),
        }
