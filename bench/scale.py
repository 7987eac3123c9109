"""Stage 3: scale. N DatabaseMigrations across 50 namespaces, the operator vs the floor client.

For each size N: the operator (all namespaces, a fresh process) gets N migrations at once
(created by 8 threads), and the bench notes when the last Job appeared and when the last
migration turned Ready, the operator's CPU seconds and peak RSS (VmHWM) meanwhile, and, once
they settled, its RSS and CPU over an idle window and the requests it made then. Then the
operator stops and the floor client does the same with N migrations of its own.

Jobs are finished by the stand-in kubelet (bench/standin_kubelet.py): no migration pod runs.
The databases are SQLite files that nothing opens (the operator reads no version table for
SQLite; the stand-in reports the runner's JSON result from a real run of the same files).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchlib.apimeter import ApiMeter, work_requests
from benchlib.bed import Bed, Helper, floor_job_template
from benchlib.common import SYSTEM_NAMESPACE, log, mib, run_in_threads, sample_process, summary
from benchlib.kube import create_migration, delete_namespaces, ensure_namespace, migration_body
from benchlib.observer import Observer
from latency import quickstart_files, wait_for_service_account

from testbed import kubetest
from testbed.operatorprocess import OperatorProcess

SIDES = ("operator", "floor")
SHORT_IDLE_SECONDS = 10.0
SETTLE_SECONDS = 3.0  # after the last Ready: late Events, the last quick passes


class Driver:
    """The operator or the floor client, as a process with a pid."""

    def __init__(self, side: str, bed: Bed, log_dir: Path, template: Path) -> None:
        self.side = side
        self.operator: OperatorProcess | None = None
        self.floor: Helper | None = None
        if side == "operator":
            self.operator = OperatorProcess(
                bed.operator.kubeconfig, log_dir, SYSTEM_NAMESPACE, "operator-scale"
            )
        else:
            args = ["--kubeconfig", str(bed.floor.kubeconfig), "--template", str(template)]
            self.floor = Helper("floor_client.py", args, log_dir, "floor-scale")

    def start(self) -> None:
        if self.operator is not None:
            self.operator.start()
            self.operator.wait_leader()
        elif self.floor is not None:
            self.floor.start()

    @property
    def pid(self) -> int:
        if self.operator is not None and self.operator.process is not None:
            return int(self.operator.process.pid)
        assert self.floor is not None
        return self.floor.pid

    def stop(self) -> None:
        if self.operator is not None:
            self.operator.stop()
        if self.floor is not None:
            self.floor.stop()

    def log(self) -> str:
        if self.operator is not None:
            return self.operator.log()[-3000:]
        return self.floor.log() if self.floor is not None else ""


def prepare(bed: Bed, namespaces: list[str], names: dict[str, list[str]]) -> None:
    files = quickstart_files()
    sqlite_dir = bed.work / "sqlite"

    def one(namespace: str) -> Callable[[], None]:
        def work() -> None:
            ensure_namespace(bed.api, namespace, {"bench.lockstep.dev/stage": "scale"})
            wait_for_service_account(bed, namespace)
            urls = {n: f"sqlite:///{sqlite_dir}/{namespace}/{n}.sqlite" for n in names[namespace]}
            kubetest.create_secret(bed.api, namespace, "db", urls)
            kubetest.create_config_map(bed.api, namespace, "shop-migrations", files)

        return work

    run_in_threads([one(namespace) for namespace in namespaces])


def run_side(
    bed: Bed,
    observer: Observer,
    side: str,
    size: int,
    namespace_count: int,
    idle_seconds: float,
    log_dir: Path,
    template: Path,
    on_operator: Callable[[int], Callable[[], None]] | None,
) -> dict[str, Any]:
    prefix = f"bench-scale-{side}-{size}"
    namespaces = [f"{prefix}-{j:02d}" for j in range(namespace_count)]
    warm_namespace = f"{prefix}-warm"
    names: dict[str, list[str]] = {ns: [] for ns in namespaces}
    for i in range(size):
        names[namespaces[i % namespace_count]].append(f"m-{i:04d}")
    names[warm_namespace] = ["warm"]
    log(f"scale {size}, {side}: preparing {namespace_count} namespaces")
    prepare(bed, [*namespaces, warm_namespace], names)
    driver = Driver(side, bed, log_dir, template)
    marks = observer.marks
    keys = [(ns, name) for ns in namespaces for name in names[ns]]
    stop_profiler: Callable[[], None] | None = None
    try:
        driver.start()
        create_migration(bed.kube, warm_namespace, body(side, "warm"))
        observer.wait(
            "the warm-up migration", lambda m: (warm_namespace, "warm") in m.migration_ready, 120
        )
        start_sample = sample_process(driver.pid)
        before = bed.meter.snapshot()
        events_before = _events(observer, namespaces)
        if on_operator is not None and side == "operator":
            stop_profiler = on_operator(driver.pid)
        log(f"scale {size}, {side}: creating {size} migrations")
        started = time.monotonic()
        work = [_creator(bed, ns, side, name) for ns, name in keys]
        run_in_threads(work, threads=8)
        created = time.monotonic()
        observer.wait(
            f"{size} migrations Ready",
            lambda m: all(k in m.migration_ready for k in keys),
            timeout=120 + size * 1.0,
        )
        busy_sample = sample_process(driver.pid)
        last_ready = max(marks.migration_ready[k] for k in keys)
        last_job = max(marks.job_added[k] for k in keys)
        if stop_profiler is not None:
            stop_profiler()
            stop_profiler = None
        time.sleep(SETTLE_SECONDS)
        after = bed.meter.snapshot()
        events_after = _events(observer, namespaces)
        idle_start = sample_process(driver.pid)
        time.sleep(idle_seconds)
        idle_end = sample_process(driver.pid)
        idle_after = bed.meter.snapshot()
    except BaseException:
        log(f"{side} log tail:\n{driver.log()}")
        raise
    finally:
        if stop_profiler is not None:
            stop_profiler()
        driver.stop()
    requests = ApiMeter.delta(before, after)[side]
    idle_requests = ApiMeter.delta(after, idle_after)[side]
    to_job = [marks.job_added[k] - marks.migration_added[k] for k in keys]
    to_ready = [marks.migration_ready[k] - marks.job_complete[k] for k in keys]
    result = {
        "size": size,
        "create_seconds": round(created - started, 2),
        "all_jobs_seconds": round(last_job - started, 2),
        "all_ready_seconds": round(last_ready - started, 2),
        "created_to_job": summary(to_job),
        "job_to_ready": summary(to_ready),
        "cpu_seconds": round(busy_sample.cpu_seconds - start_sample.cpu_seconds, 2),
        "rss_before_mib": mib(start_sample.rss_bytes),
        "peak_rss_mib": mib(busy_sample.peak_rss_bytes),
        "idle_rss_mib": mib(idle_end.rss_bytes),
        "idle_seconds": idle_seconds,
        "idle_cpu_seconds": round(idle_end.cpu_seconds - idle_start.cpu_seconds, 3),
        "api_per_migration": round(work_requests(requests) / size, 2),
        "watch_events_per_migration": {
            resource: round((count - events_before.get(resource, 0)) / size, 2)
            for resource, count in events_after.items()
        },
        "requests": requests,
        "idle_requests": idle_requests,
    }
    log(
        f"scale {size}, {side}: all Ready after {result['all_ready_seconds']}s, "
        f"{result['cpu_seconds']} CPU s, peak RSS {result['peak_rss_mib']} MiB"
    )
    return result


def _events(observer: Observer, namespaces: list[str]) -> dict[str, int]:
    total: dict[str, int] = {}
    for namespace in namespaces:
        for resource, count in observer.events_in(namespace).items():
            total[resource] = total.get(resource, 0) + count
    return total


def body(side: str, name: str) -> dict[str, Any]:
    return migration_body(name, "shop-migrations", "db", name, "sqlite", side)


def _creator(bed: Bed, namespace: str, side: str, name: str) -> Callable[[], None]:
    return lambda: create_migration(bed.kube, namespace, body(side, name))


def linearity(sizes: list[dict[str, Any]], side: str, metric: str) -> dict[str, Any]:
    """Least-squares line through (size, metric) and how well it fits (R²)."""
    points = [(s["size"], s[side][metric]) for s in sizes]
    if len(points) < 2:
        return {}
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    sxx = sum((x - mean_x) ** 2 for x, _ in points)
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in points)
    slope = sxy / sxx if sxx else 0.0
    intercept = mean_y - slope * mean_x
    total = sum((y - mean_y) ** 2 for _, y in points)
    residual = sum((y - (intercept + slope * x)) ** 2 for x, y in points)
    r2 = 1 - residual / total if total else 1.0
    small, large = points[0], points[-1]
    per_small = small[1] / small[0] if small[0] else math.nan
    per_large = large[1] / large[0] if large[0] else math.nan
    return {
        "per_migration_slope": round(slope, 5),
        "intercept": round(intercept, 3),
        "r2": round(r2, 4),
        "per_migration_at_smallest": round(per_small, 5),
        "per_migration_at_largest": round(per_large, 5),
    }


def run(
    bed: Bed,
    sizes: list[int],
    namespace_count: int,
    idle_seconds: float,
    runner_report: str,
    log_dir: Path,
    on_operator: Callable[[int], Callable[[], None]] | None = None,
) -> dict[str, Any]:
    bed.stop_agent()
    message = bed.work / "runner-report.json"
    message.write_text(runner_report + "\n")
    template = bed.work / "floor-job-template-sqlite.json"
    template.write_text(floor_job_template("sqlite"))
    stand_in = Helper(
        "standin_kubelet.py",
        ["--kubeconfig", str(bed.kubeconfig), "--message-file", str(message)],
        log_dir,
        "standin-kubelet",
    )
    observer = Observer(bed.kube)
    results: list[dict[str, Any]] = []
    stand_in.start()
    observer.start()
    try:
        for size in sizes:
            entry: dict[str, Any] = {"size": size}
            # The full idle window at the largest size only: the others idle briefly.
            idle = idle_seconds if size == max(sizes) else min(idle_seconds, SHORT_IDLE_SECONDS)
            for side in SIDES:
                entry[side] = run_side(
                    bed,
                    observer,
                    side,
                    size,
                    min(namespace_count, size),
                    idle,
                    log_dir,
                    template,
                    on_operator,
                )
            results.append(entry)
            namespaces = [
                ns
                for ns in _namespaces(bed)
                if ns.startswith(("bench-scale-operator-", "bench-scale-floor-"))
            ]
            # The next size's operator watches all namespaces: these must be gone first. After
            # the last size nothing watches them any more.
            last = size == sizes[-1]
            log(f"scale {size}: deleting its namespaces" + ("" if last else " (waiting)"))
            delete_namespaces(bed.api, namespaces, timeout=0 if last else 300)
    finally:
        observer.close()
        stand_in.stop()
    growth = {
        side: {
            metric: linearity(results, side, metric)
            for metric in ("all_ready_seconds", "cpu_seconds", "peak_rss_mib", "idle_rss_mib")
        }
        for side in SIDES
    }
    return {
        "namespaces": namespace_count,
        "jobs_finished_by": "stand-in kubelet (bench/standin_kubelet.py)",
        "database": "sqlite (not opened: no pod runs)",
        "sizes": results,
        "growth": growth,
    }


def _namespaces(bed: Bed) -> list[str]:
    from kubernetes import client

    items = client.CoreV1Api(bed.api).list_namespace().items
    return [str(n.metadata.name) for n in items if n.metadata]
