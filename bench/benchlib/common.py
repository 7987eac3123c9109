"""What every bench stage shares: the repository, the names of Lockstep's objects and labels,
the bench's log line, numbers (summaries, ratios), the machine, and RSS and CPU of a process."""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]

GROUP, VERSION, PLURAL = "lockstep.dev", "v1alpha1", "databasemigrations"
SYSTEM_NAMESPACE = "lockstep-system"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MIGRATION_LABEL = "lockstep.dev/migration"
WAIT_FOR_LABEL = "lockstep.dev/wait-for"
GATE = "lockstep.dev/migration"
DRIVER_LABEL = "bench.lockstep.dev/driver"  # "operator" or "floor": who reconciles the object
RUNNER_IMAGE = "ghcr.io/lockstep-dev/lockstep:bench"


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- numbers


def summary(values: Sequence[float], digits: int = 4) -> dict[str, float | int]:
    """n, p50, p95, max and mean of `values` (seconds, say)."""
    if not values:
        return {"n": 0}
    ordered = sorted(values)

    def percentile(p: float) -> float:
        # Nearest rank: the smallest value with at least p% of the samples at or below it.
        rank = max(1, -(-len(ordered) * p // 100))
        return ordered[int(rank) - 1]

    return {
        "n": len(ordered),
        "p50": round(percentile(50), digits),
        "p95": round(percentile(95), digits),
        "max": round(ordered[-1], digits),
        "mean": round(statistics.fmean(ordered), digits),
    }


def ratio(value: float | None, floor: float | None) -> float | None:
    if value is None or not floor:
        return None
    return round(value / floor, 2)


# --------------------------------------------------------------------------- the machine


def machine(kube_version: str | None = None) -> dict[str, Any]:
    memory = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = int(line.split()[1]) * 1024
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(memory / 2**30, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "kubernetes": kube_version,
    }


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# --------------------------------------------------------------------------- processes


@dataclass(frozen=True)
class ProcessSample:
    at: float
    cpu_seconds: float
    rss_bytes: int
    peak_rss_bytes: int  # VmHWM: the highest RSS since the process started


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def sample_process(pid: int) -> ProcessSample:
    """CPU seconds (user + system, threads included) and RSS of `pid`, from /proc."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime
    rss = peak = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
        elif line.startswith("VmHWM:"):
            peak = int(line.split()[1]) * 1024
    return ProcessSample(time.monotonic(), cpu, rss, peak)


def mib(value: float) -> float:
    return round(value / 2**20, 1)


def run_in_threads(work: Sequence[Callable[[], None]], threads: int = 8) -> None:
    """Run the callables on a few threads; raise the first error."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=threads) as pool:
        for future in [pool.submit(item) for item in work]:
            future.result()


@contextlib.contextmanager
def timed(what: str) -> Iterator[None]:
    started = time.monotonic()
    yield
    log(f"{what}: {time.monotonic() - started:.1f}s")
