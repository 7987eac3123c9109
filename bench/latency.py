"""Stage 1, 2 and 5: reaction latency, API cost per migration and gate latency.

On the real pod agent (every Job runs the real `lockstep lock` sidecar and `lockstep run`
against a PostgreSQL database of its own), the operator and the floor client
(bench/floor_client.py) reconcile the same migrations side by side, in two namespaces, at the
same time: pairs are created back to back (the order alternates) and at most `concurrency` pairs
are in flight. The observer (benchlib.Observer) notes when each DatabaseMigration appeared, its
Job appeared, the Job completed and the DatabaseMigration turned Ready; for the gate samples,
also when the app pod that waits for the migration lost its scheduling gate.

Last, the operator is restarted with a resync every 20 s (LOCKSTEP_RESYNC_SECONDS) and the
requests and CPU of one full pass per settled migration are counted (`measure_resync`).

The migrations are the quickstart's (two SQL files). The operator watches only its namespace
(`--namespace`); the floor client only objects labelled for it.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import yaml
from benchlib.apimeter import ApiMeter, work_requests
from benchlib.bed import Bed, Helper, floor_job_template
from benchlib.common import REPO, SYSTEM_NAMESPACE, WAIT_FOR_LABEL, log, sample_process, summary
from benchlib.kube import create_migration, delete_namespaces, ensure_namespace, migration_body
from benchlib.observer import Key, Observer
from sqlalchemy.engine import make_url

from testbed import kubetest
from testbed.operatorprocess import OperatorProcess

QUICKSTART = REPO / "examples" / "quickstart" / "migration.yaml"
SIDES = ("operator", "floor")
APP_IMAGE = "registry.k8s.io/pause:3.10"
# App pods stay unscheduled once released (the pod agent leaves other schedulers' pods alone):
# the gate's release is what is measured, not the app.
APP_SCHEDULER = "lockstep-bench-none"


def quickstart_files() -> dict[str, str]:
    for document in yaml.safe_load_all(QUICKSTART.read_text()):
        if document and document.get("kind") == "ConfigMap":
            return dict(document["data"])
    raise RuntimeError(f"no ConfigMap in {QUICKSTART}")


def wait_for_service_account(bed: Bed, namespace: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    path = f"/api/v1/namespaces/{namespace}/serviceaccounts/default"
    while True:
        try:
            bed.kube.get(path)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def app_pod(name: str, migration: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {WAIT_FOR_LABEL: migration, "app": "bench"}},
        "spec": {
            "schedulerName": APP_SCHEDULER,
            "containers": [{"name": "app", "image": APP_IMAGE}],
        },
    }


class Sides:
    """The two namespaces, their databases, Secrets and ConfigMaps."""

    def __init__(self, bed: Bed, names: list[str]) -> None:
        self.bed = bed
        tag = uuid.uuid4().hex[:6]
        self.namespaces = {side: f"bench-latency-{side}-{tag}" for side in SIDES}
        files = quickstart_files()
        admin = bed.pg_admin_url
        with psycopg.connect(admin, autocommit=True) as connection:
            for side, namespace in self.namespaces.items():
                ensure_namespace(bed.api, namespace, {"bench.lockstep.dev/stage": "latency"})
                urls = {}
                for name in names:
                    database = f"bench_{side[0]}_{tag}_{name.replace('-', '_')}"
                    connection.execute(f'CREATE DATABASE "{database}"')
                    url = make_url(admin).set(database=database)
                    urls[name] = url.render_as_string(hide_password=False)
                wait_for_service_account(bed, namespace)
                kubetest.create_secret(bed.api, namespace, "db", urls)
                kubetest.create_config_map(bed.api, namespace, "shop-migrations", files)

    def create(self, side: str, name: str) -> None:
        body = migration_body(name, "shop-migrations", "db", name, "postgresql", side)
        create_migration(self.bed.kube, self.namespaces[side], body)

    def create_pod(self, side: str, name: str, migration: str) -> None:
        path = f"/api/v1/namespaces/{self.namespaces[side]}/pods"
        self.bed.kube.post(path, app_pod(name, migration))

    def key(self, side: str, name: str) -> Key:
        return (self.namespaces[side], name)


def run_pairs(
    sides: Sides,
    observer: Observer,
    names: list[str],
    concurrency: int,
    with_pods: bool = False,
    timeout_per_pair: float = 120.0,
) -> None:
    """Create each migration on both sides; keep at most `concurrency` pairs unfinished."""
    marks = observer.marks
    pending = list(names)
    in_flight: dict[str, float] = {}
    started = time.monotonic()
    done = 0
    while pending or in_flight:
        for name in list(in_flight):
            if all(sides.key(side, name) in marks.migration_ready for side in SIDES):
                del in_flight[name]
                done += 1
            elif time.monotonic() - in_flight[name] > timeout_per_pair:
                raise TimeoutError(f"migration {name} not Ready on both sides after 120s")
        while pending and len(in_flight) < concurrency:
            name = pending.pop(0)
            order = SIDES if (len(names) - len(pending)) % 2 else tuple(reversed(SIDES))
            for side in order:
                sides.create(side, name)
                if with_pods:
                    sides.create_pod(side, f"app-{name}", name)
            in_flight[name] = time.monotonic()
        time.sleep(0.02)
    log(f"{done} pair(s) in {time.monotonic() - started:.1f}s")


def latencies(
    observer: Observer, sides: Sides, side: str, names: list[str]
) -> dict[str, list[float]]:
    marks = observer.marks
    created, ready = [], []
    for name in names:
        key = sides.key(side, name)
        created.append(marks.job_added[key] - marks.migration_added[key])
        ready.append(marks.migration_ready[key] - marks.job_complete[key])
    return {"created_to_job": created, "job_to_ready": ready}


def gate_latencies(observer: Observer, sides: Sides, side: str, names: list[str]) -> list[float]:
    marks = observer.marks
    result = []
    for name in names:
        pod = sides.key(side, f"app-{name}")
        if pod not in marks.pod_gated:
            raise RuntimeError(f"app pod {pod} was never gated (is the webhook registered?)")
        result.append(marks.pod_released[pod] - marks.job_complete[sides.key(side, name)])
    return result


def termination_message(bed: Bed, namespace: str) -> str:
    """The migrate container's termination message of a finished Job pod (the runner's report)."""
    pods = bed.kube.get(
        f"/api/v1/namespaces/{namespace}/pods",
        labelSelector="app.kubernetes.io/managed-by=lockstep",
    )
    for pod in pods.get("items") or []:
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            terminated = (status.get("state") or {}).get("terminated") or {}
            if status.get("name") == "migrate" and terminated.get("message"):
                return str(terminated["message"])
    raise RuntimeError(f"no finished migration pod with a termination message in {namespace}")


RESYNC_ENV = "LOCKSTEP_RESYNC_SECONDS"  # lockstep.controller.main.RESYNC_ENV


def measure_resync(
    bed: Bed, operator: OperatorProcess, migrations: int, seconds: float
) -> dict[str, Any]:
    """Restart the operator with a full pass of every settled migration every `seconds`.

    Its first passes (first sight of each migration) fall in the first half period; each
    migration's next full pass (its resync timer) `seconds` later, so the window from half a
    period to one and a half holds exactly one resync per migration: measured, not computed.
    """
    operator.stop()
    before = bed.meter.snapshot()
    os.environ[RESYNC_ENV] = f"{seconds:g}"
    try:
        operator.start()
    finally:
        del os.environ[RESYNC_ENV]
    assert operator.process is not None
    pid = operator.process.pid
    started = time.monotonic()
    operator.wait_leader()
    time.sleep(max(seconds / 2 - (time.monotonic() - started), 0.0))
    middle, cpu_middle = bed.meter.snapshot(), sample_process(pid).cpu_seconds
    time.sleep(seconds)
    after, cpu_after = bed.meter.snapshot(), sample_process(pid).cpu_seconds
    restart = ApiMeter.delta(before, middle).get("operator", {})
    resync = ApiMeter.delta(middle, after).get("operator", {})
    return {
        "migrations": migrations,
        "period_seconds": seconds,
        "restart_requests": restart,
        "restart_per_migration": round(work_requests(restart) / migrations, 2),
        "resync_requests": resync,
        "resync_per_migration": round(work_requests(resync) / migrations, 2),
        "resync_cpu_ms_per_migration": round(1000 * (cpu_after - cpu_middle) / migrations, 2),
    }


def run(
    bed: Bed,
    samples: int,
    gate_samples: int,
    concurrency: int,
    idle_seconds: float,
    log_dir: Path,
    on_operator: Callable[[int], Callable[[], None]] | None = None,
    resync_seconds: float = 20.0,
    operator_args: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Run the stage; `on_operator(pid)` may start a profiler and return its stop function;
    `operator_args` go to `lockstep operator` (e.g. --watch-secrets)."""
    warm = ["warm-0", "warm-1"]
    measured = [f"m-{i:03d}" for i in range(samples)]
    gated = [f"g-{i:03d}" for i in range(gate_samples)]
    bed.start_agent()
    sides = Sides(bed, warm + measured + gated)
    template = bed.work / "floor-job-template.json"
    template.write_text(floor_job_template("postgresql"))
    operator = OperatorProcess(
        bed.operator.kubeconfig,
        log_dir,
        SYSTEM_NAMESPACE,
        "operator-latency",
        ("--namespace", sides.namespaces["operator"], *operator_args),
    )
    floor = Helper(
        "floor_client.py",
        ["--kubeconfig", str(bed.floor.kubeconfig), "--template", str(template)],
        log_dir,
        "floor-latency",
    )
    observer = Observer(bed.kube)
    stop_profiler: Callable[[], None] | None = None
    try:
        operator.start()
        operator.wait_leader()
        floor.start()
        observer.start()
        log("latency: warming up (first Jobs, lazy imports)")
        run_pairs(sides, observer, warm, concurrency=2)
        message = termination_message(bed, sides.namespaces["operator"])
        assert operator.process is not None
        pids = {"operator": operator.process.pid, "floor": floor.pid}
        cpu_before = {side: sample_process(pid).cpu_seconds for side, pid in pids.items()}
        before, executed_before = bed.meter.readings()
        events_before = {side: observer.events_in(ns) for side, ns in sides.namespaces.items()}
        if on_operator is not None:
            stop_profiler = on_operator(pids["operator"])
        log(f"latency: {samples} migration(s) on each side, {concurrency} pair(s) at a time")
        run_pairs(sides, observer, measured, concurrency)
        time.sleep(1.0)  # late writes of the last pair (Events) land in this window too
        after, executed_after = bed.meter.readings()
        events_after = {side: observer.events_in(ns) for side, ns in sides.namespaces.items()}
        cpu_after = {side: sample_process(pid).cpu_seconds for side, pid in pids.items()}
        if stop_profiler is not None:
            stop_profiler()
            stop_profiler = None
        log(f"latency: gate, {gate_samples} migration(s) with a waiting app pod on each side")
        run_pairs(sides, observer, gated, concurrency, with_pods=True)
        time.sleep(2.0)
        idle_before = bed.meter.snapshot()
        log(f"latency: idle for {idle_seconds:.0f}s")
        idle_cpu = {side: sample_process(pid).cpu_seconds for side, pid in pids.items()}
        time.sleep(idle_seconds)
        idle_after = bed.meter.snapshot()
        idle_cpu = {
            side: sample_process(pid).cpu_seconds - idle_cpu[side] for side, pid in pids.items()
        }
        log(f"latency: operator restarted with a resync every {resync_seconds:g}s")
        resync = measure_resync(bed, operator, len(warm + measured + gated), resync_seconds)
    except BaseException:
        log(f"operator log tail:\n{operator.log()[-3000:]}\nfloor log:\n{floor.log()}")
        raise
    finally:
        if stop_profiler is not None:
            stop_profiler()
        observer.close()
        floor.stop()
        operator.stop()
    api = ApiMeter.delta(before, after)
    executed = ApiMeter.mean_execution_ms(executed_before, executed_after)
    idle = ApiMeter.delta(idle_before, idle_after)
    result: dict[str, Any] = {
        "samples": samples,
        "gate_samples": gate_samples,
        "concurrency": concurrency,
        "database": "postgresql (one database per migration)",
        "operator_args": list(operator_args),
        "created_to_job": {},
        "job_to_ready": {},
        "gate_release": {},
        "api": {},
        "cpu_seconds_per_migration": {},
        "watch_events_per_migration": {},
        "idle": {"seconds": idle_seconds, "requests": idle, "cpu_seconds": {}},
        "runner_report": message,
        "resync": resync,
    }
    for side in SIDES:
        times = latencies(observer, sides, side, measured)
        result["created_to_job"][side] = summary(times["created_to_job"])
        result["job_to_ready"][side] = summary(times["job_to_ready"])
        result["gate_release"][side] = summary(gate_latencies(observer, sides, side, gated))
        result["api"][side] = {
            "per_migration": round(work_requests(api[side]) / samples, 2),
            "requests": api[side],
            # The API server's own time per request of each kind (its flow-control metrics).
            "execution_ms": executed.get(side, {}),
        }
        result["cpu_seconds_per_migration"][side] = round(
            (cpu_after[side] - cpu_before[side]) / samples, 4
        )
        result["idle"]["cpu_seconds"][side] = round(idle_cpu[side], 3)
        result["watch_events_per_migration"][side] = {
            resource: round((count - events_before[side].get(resource, 0)) / samples, 2)
            for resource, count in events_after[side].items()
        }
    log("latency: deleting the stage's namespaces")
    delete_namespaces(bed.api, sides.namespaces.values(), timeout=120)
    bed.stop_agent()
    return result
