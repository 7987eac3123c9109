"""Fleet scale: N DatabaseMigrations, each with 5 past releases, an operator (re)starting on them.

    PYTHONPATH=tools .venv/bin/python bench/fleet.py --sizes 100,1000 [--before PATH]

`make bench-scale`. For each N, seeds N migrations (across N/100 namespaces) through the API,
each with the Jobs and pods of 5 finished releases (Jobs marked finished in their status,
`spec.managedBy` set so that the Job controller leaves them alone; pods with the terminated
container statuses a kubelet reports) and a status that records those runs, the newest for the
current spec. Nothing runs: this measures what Lockstep costs while it watches a settled fleet.

Then, in this order, each side starts fresh on the same objects:
- floor: Kopf with no-op handlers on the same kinds (bench/fleet_floor.py), and, once per run,
  the import-only floor (a process that imports the operator's modules and sleeps);
- before (with --before, a `lockstep` executable of the code to compare against);
- after: this checkout's operator (retention on: older Jobs are deleted, so it runs last).
For each: seconds and CPU seconds until the first pass over every migration is done and the
process is quiet, peak RSS, RSS and CPU over an idle window, and CPU per event: K Jobs relabelled
at a steady rate (a Job event wakes its migration and every migration on its database), CPU over
that window minus the background rate (the mean of an idle window before it and one after it),
divided by K. Prints one table per N; writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchlib import fleet_shards
from benchlib.bed import Bed, Helper, test_bed
from benchlib.common import REPO, SYSTEM_NAMESPACE, ProcessSample, log, mib, sample_process
from benchlib.fleet_seed import RELEASES, namespaces_of, seed
from benchlib.kube import delete_namespaces

from testbed import operatorprocess
from testbed.operatorprocess import OperatorProcess

QUIET_CPU_FRACTION = 0.03  # "quiet": under 3 % of a core over QUIET_SECONDS
QUIET_SECONDS = 3.0


def sample(pids: int | list[int]) -> ProcessSample:
    """One process's sample, or the sum over several (RSS, peak RSS and CPU added up)."""
    samples = [sample_process(p) for p in (pids if isinstance(pids, list) else [pids])]
    return ProcessSample(
        samples[0].at,
        sum(x.cpu_seconds for x in samples),
        sum(x.rss_bytes for x in samples),
        sum(x.peak_rss_bytes for x in samples),
    )


def cpu_rate(start: ProcessSample, end: ProcessSample) -> float:
    """Cores the process used between two samples."""
    return (end.cpu_seconds - start.cpu_seconds) / (end.at - start.at)


def wait_quiet(pid: int | list[int], ready: Any, timeout: float) -> tuple[float, bool]:
    """Seconds until `ready()` and then QUIET_SECONDS under QUIET_CPU_FRACTION of a core."""
    started = time.monotonic()
    last = sample(pid)
    while time.monotonic() - started < timeout:
        time.sleep(QUIET_SECONDS)
        now = sample(pid)
        busy = cpu_rate(last, now)
        last = now
        if busy < QUIET_CPU_FRACTION and ready():
            return round(now.at - started - QUIET_SECONDS, 1), True
    return round(time.monotonic() - started, 1), False


def measure(
    pid: int | list[int],
    started: float,
    ready: Any,
    newest: list[tuple[str, str, str]],
    bed: Bed,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Start-up (since `started`, the process's start), idle and per-event cost of `pid`."""
    _, converged = wait_quiet(pid, ready, args.timeout)
    up = sample(pid)
    # Work an operator does once after its start has settled (the cache compaction, up to
    # 30 s after the churn stops) stays out of the idle and per-event windows.
    time.sleep(args.settle_seconds)
    settled = sample(pid)
    time.sleep(args.idle_seconds)
    idle = sample(pid)
    idle_rate = cpu_rate(settled, idle)
    # --events touches, round the newest Jobs as often as it takes (a fleet of 100 has 100)
    touched = [newest[i % len(newest)] for i in range(args.events)]
    gap = 1.0 / args.event_rate
    before = sample(pid)
    for i, (namespace, _, job) in enumerate(touched):
        path = f"/apis/batch/v1/namespaces/{namespace}/jobs/{job}"
        bed.kube.patch(
            path,
            {"metadata": {"labels": {"bench.lockstep.dev/touch": f"{args.touch}-{i}"}}},
            patch_type="merge",
        )
        time.sleep(gap)
    time.sleep(QUIET_SECONDS)
    after = sample(pid)
    args.touch += 1
    # The background (resync passes: 10,000 migrations every 10 minutes is 17 a second) is the
    # mean of an idle window before the events and one as long after them.
    time.sleep(args.idle_seconds)
    idle_after = sample(pid)
    idle_after_rate = cpu_rate(after, idle_after)
    background = (idle_rate + idle_after_rate) / 2
    window = after.at - before.at
    busy = after.cpu_seconds - before.cpu_seconds
    per_event = (busy - background * window) / max(len(touched), 1)
    return {
        # From the process's start (imports, leader election and the listing included).
        "startup_seconds": round(up.at - started - QUIET_SECONDS, 1),
        "converged": converged,
        "startup_cpu_seconds": round(up.cpu_seconds, 2),
        "peak_rss_mib": mib(up.peak_rss_bytes),
        "settle_cpu_seconds": round(settled.cpu_seconds - up.cpu_seconds, 2),
        "idle_rss_mib": mib(idle.rss_bytes),
        "idle_cpu_per_second": round(idle_rate, 4),
        "idle_after_cpu_per_second": round(idle_after_rate, 4),
        "events": len(touched),
        "cpu_ms_per_event": round(1000 * per_event, 3),
        "cpu_ms_per_event_raw": round(
            1000 * (after.cpu_seconds - before.cpu_seconds) / max(len(touched), 1), 3
        ),
    }


def import_floor() -> dict[str, Any]:
    """RSS of a process that only imports the operator's modules (Kopf, the client, Lockstep)."""
    code = (
        "import lockstep.controller.handlers, time, sys; print('ready', flush=True); time.sleep(30)"
    )
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, cwd=REPO)
    try:
        assert process.stdout is not None
        process.stdout.readline()
        time.sleep(1.0)
        sample = sample_process(process.pid)
        return {"idle_rss_mib": mib(sample.rss_bytes), "cpu_seconds": round(sample.cpu_seconds, 2)}
    finally:
        process.terminate()
        process.wait()


def count_jobs(bed: Bed, size: int) -> int:
    items = bed.kube.get(
        "/apis/batch/v1/jobs", labelSelector="app.kubernetes.io/managed-by=lockstep"
    )["items"]
    return sum(1 for j in items if j["metadata"]["namespace"].startswith(f"fleet-{size}-"))


def reconciled(process: OperatorProcess, size: int) -> Any:
    def ready() -> bool:
        try:
            text = process.metrics()
        except OSError:  # a scrape that times out while the start keeps the operator busy
            return False
        total = 0.0
        for line in text.splitlines():
            if line.startswith("lockstep_reconcile_total{"):
                total += float(line.rsplit(" ", 1)[1])
        return total >= size

    return ready


def run_size(bed: Bed, size: int, args: argparse.Namespace, log_dir: Path) -> dict[str, Any]:
    newest = seed(bed, size)
    result: dict[str, Any] = {"size": size, "jobs_seeded": count_jobs(bed, size)}
    counts = bed.work / f"floor-{size}.json"
    os.environ["KUBECONFIG"] = str(bed.operator.kubeconfig)
    floor = Helper("fleet_floor.py", ["--counts", str(counts)], log_dir, f"fleet-floor-{size}")
    floor_started = time.monotonic()
    floor.start()
    try:

        def listed() -> bool:
            seen = json.loads(counts.read_text()) if counts.exists() else {}
            return (
                seen.get("migrations", 0) >= size
                and seen.get("jobs", 0) >= size * RELEASES
                and seen.get("pods", 0) >= size * RELEASES
            )

        result["floor"] = measure(floor.pid, floor_started, listed, newest, bed, args)
    finally:
        floor.stop()
    sides = [("before", args.before)] if args.before and size <= args.before_max else []
    for side, executable in sides:
        # Every Job kept, as by the "one instance" side: the same fleet for both.
        result[side] = run_one(bed, size, newest, args, log_dir, side, executable, keep=-1)
    if size <= args.shard_max:
        # One instance and two shards, both keeping every Job (the fleet stays as seeded).
        result.update(
            fleet_shards.compare(bed, size, newest, args, log_dir, run_one, measure, reconciled)
        )
    # This checkout's operator with retention on: it deletes the older Jobs, so it runs last.
    result["after"] = run_one(bed, size, newest, args, log_dir, "after", args.after, args.keep)
    return result


def run_one(
    bed: Bed,
    size: int,
    newest: list[tuple[str, str, str]],
    args: argparse.Namespace,
    log_dir: Path,
    side: str,
    executable: Path | None,
    keep: int,
) -> dict[str, Any]:
    """One operator instance (`executable`, or this checkout's) started fresh on the fleet."""
    operatorprocess.LOCKSTEP = executable or Path(sys.executable).parent / "lockstep"
    process = OperatorProcess(
        bed.operator.kubeconfig,
        log_dir,
        SYSTEM_NAMESPACE,
        f"fleet-{side}-{size}",
        extra_env={"LOCKSTEP_KEEP_FINISHED_JOBS": str(keep)},
    )
    started = time.monotonic()
    process.start()
    try:
        process.wait_leader(timeout=120)
        assert process.process is not None
        result = measure(process.process.pid, started, reconciled(process, size), newest, bed, args)
    except BaseException:
        log(f"{side} log tail:\n{process.log()[-3000:]}")
        raise
    finally:
        process.stop()
    result["jobs_left"] = count_jobs(bed, size)
    return result


def render(result: dict[str, Any]) -> str:
    columns = ["floor", "before", *fleet_shards.COLUMNS, "after"]
    metrics = [
        "startup_seconds",
        "startup_cpu_seconds",
        "peak_rss_mib",
        "settle_cpu_seconds",
        "idle_rss_mib",
        "idle_cpu_per_second",
        "idle_after_cpu_per_second",
        "cpu_ms_per_event",
        "cpu_ms_per_event_raw",
        "jobs_left",
        "instances_peak_rss_mib",
    ]
    lines = [f"import-only floor: idle RSS {result['import_floor']['idle_rss_mib']} MiB"]
    for entry in result["sizes"]:
        present = [c for c in columns if c in entry]
        lines.append(
            f"\nN={entry['size']} migrations x {RELEASES} releases "
            f"({entry['jobs_seeded']} Jobs seeded)"
        )
        lines.append(f"{'metric':24}" + "".join(f"{c:>14}" for c in present))
        for metric in metrics:
            cells = "".join(f"{entry[c].get(metric, '-')!s:>14}" for c in present)
            lines.append(f"{metric:24}{cells}")
        lines.append(
            f"{'converged':24}" + "".join(f"{entry[c]['converged']!s:>14}" for c in present)
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100,1000")
    parser.add_argument("--before", type=Path, help="a `lockstep` executable to compare against")
    parser.add_argument(
        "--after", type=Path, help="the `lockstep` executable of the after side (default: this one)"
    )
    parser.add_argument("--before-max", type=int, default=10**9, help="run --before up to this N")
    parser.add_argument(
        "--shard-max", type=int, default=0, help="up to this N, one instance vs 2 shards too"
    )
    parser.add_argument("--keep", type=int, default=1, help="--keep-finished-jobs of the operators")
    parser.add_argument("--idle-seconds", type=float, default=20.0)
    parser.add_argument(
        "--settle-seconds", type=float, default=45.0, help="wait after start-up, before idle"
    )
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--event-rate", type=float, default=20.0, help="Job relabels per second")
    parser.add_argument("--timeout", type=float, default=900.0, help="start-up limit per side")
    parser.add_argument("--state-dir", type=Path)
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results" / "fleet.json")
    args = parser.parse_args(argv)
    args.touch = 0
    state_dir = args.state_dir or Path(tempfile.mkdtemp(prefix="lockstep-fleet-"))
    result: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_average_start": os.getloadavg()[0],
        "sizes": [],
    }
    result["import_floor"] = import_floor()
    with test_bed(state_dir) as bed:
        bed.stop_agent()
        sizes = [int(s) for s in args.sizes.split(",")]
        for size in sizes:
            result["sizes"].append(run_size(bed, size, args, state_dir / "logs"))
            args.output.parent.mkdir(parents=True, exist_ok=True)
            args.output.write_text(json.dumps(result, indent=2) + "\n")
            # The next size's processes watch all namespaces: these must be gone first. After
            # the last size the control plane goes down with them.
            last = size == sizes[-1]
            log(f"fleet {size}: deleting its namespaces" + ("" if last else " (waiting)"))
            delete_namespaces(bed.api, namespaces_of(size), timeout=0 if last else 900)
    result["load_average_end"] = os.getloadavg()[0]
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(render(result))
    print(
        f"load average {result['load_average_start']} at start, "
        f"{result['load_average_end']} at end; {args.output}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
