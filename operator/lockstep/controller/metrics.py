"""Prometheus metrics (prometheus-client). Names follow Prometheus conventions: base units,
`_total` for counters, `_timestamp_seconds` for times. Labels are namespace, name, tool and result:
never a URL, a Secret or anything taken from one."""

from __future__ import annotations

import contextlib
import importlib.metadata
import platform
from collections.abc import Mapping
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from lockstep import __version__, conditions, constants, timestamps
from lockstep.constants import Reason
from lockstep.controller import state_gauges
from lockstep.status import MigrationStatus, Run

REGISTRY: Final = CollectorRegistry(auto_describe=True)

# Migrations can take from a second to an hour; reconciles from a millisecond to seconds.
RUN_BUCKETS: Final = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200)
LOCK_BUCKETS: Final = (0.1, 0.5, 1, 5, 15, 30, 60, 300, 600, 1800)
RECONCILE_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

OBJECT: Final = ("namespace", "name")

runs: Final = Counter(
    "lockstep_migration_runs",
    "Migration Jobs that finished, by result (Succeeded or Failed)",
    [*OBJECT, "tool", "result"],
    registry=REGISTRY,
)
duration: Final = Histogram(
    "lockstep_migration_duration_seconds",
    "How long finished migration Jobs ran",
    [*OBJECT, "tool"],
    buckets=RUN_BUCKETS,
    registry=REGISTRY,
)
lock_wait: Final = Histogram(
    "lockstep_lock_wait_seconds",
    "How long migration Jobs waited for the database's migration lock",
    OBJECT,
    buckets=LOCK_BUCKETS,
    registry=REGISTRY,
)
admissions: Final = Counter(
    "lockstep_gate_admissions",
    "Pods the rollout gate webhook saw, by decision (gated or allowed)",
    ["decision"],
    registry=REGISTRY,
)
reconciles: Final = Counter(
    "lockstep_reconcile",
    "Reconcile passes, by result (ok or error)",
    ["result"],
    registry=REGISTRY,
)
reconcile_duration: Final = Histogram(
    "lockstep_reconcile_duration_seconds",
    "How long one reconcile pass took",
    ["result"],
    buckets=RECONCILE_BUCKETS,
    registry=REGISTRY,
)
leader: Final = Gauge(
    "lockstep_leader",
    "1 when this replica holds the leader Lease and reconciles, 0 on a standby",
    registry=REGISTRY,
)
# The name client-go uses, so existing leader-election dashboards and alerts work unchanged.
leader_election_master_status: Final = Gauge(
    "leader_election_master_status",
    "1 when this replica is the leader of the named election",
    ["name"],
    registry=REGISTRY,
)

# Which build runs (the kube-state-metrics convention: a constant 1 with the facts as labels), so
# dashboards can show versions and alerts can join on them.
build_info: Final = Gauge(
    "lockstep_build_info",
    "1, labelled with the version of this Lockstep build and of what it runs on",
    ["version", "python_version", "kopf_version"],
    registry=REGISTRY,
)
build_info.labels(
    version=__version__,
    python_version=platform.python_version(),
    kopf_version=importlib.metadata.version("kopf"),
).set(1)

# The per-migration state gauges (ready, failing, ...): one collector, no Gauge child per series.
states: Final = state_gauges.MigrationStates()
REGISTRY.register(states)


def set_leader(is_leader: bool, election: str = "lockstep-leader") -> None:
    value = 1 if is_leader else 0
    leader.set(value)
    leader_election_master_status.labels(name=election).set(value)


def record_reconcile(result: str, seconds: float) -> None:
    """Count one reconcile pass ("ok" or "error") and how long it took."""
    reconciles.labels(result).inc()
    reconcile_duration.labels(result).observe(seconds)


def record_decision(
    namespace: str,
    name: str,
    tool: str,
    previous_run: Mapping[str, Any],
    status: MigrationStatus,
    lock_wait_seconds: float | None,
) -> None:
    """What one pass changed: a newly finished run (and its lock wait), and the state gauges."""
    run = status.get("lastRun") or {}
    if run and run.get("job") != previous_run.get("job"):
        record_run(namespace, name, tool, run)
        if lock_wait_seconds is not None:
            record_lock_wait(namespace, name, lock_wait_seconds)
    set_state(namespace, name, state_of(status))


def record_run(namespace: str, name: str, tool: str, run: Run) -> None:
    """Count one finished run (a new `status.lastRun`)."""
    result = str(run.get("result", "Failed"))
    runs.labels(namespace, name, tool, result).inc()
    seconds = run.get("durationSeconds")
    if isinstance(seconds, int | float):
        duration.labels(namespace, name, tool).observe(float(seconds))


def record_lock_wait(namespace: str, name: str, seconds: float) -> None:
    lock_wait.labels(namespace, name).observe(max(seconds, 0.0))


def set_state(namespace: str, name: str, state: Mapping[str, float | None]) -> None:
    """Per-object gauges from the status just written; None removes a series (e.g. no Job runs)."""
    states.set(namespace, name, state)


def forget(namespace: str, name: str) -> None:
    """A deleted DatabaseMigration leaves no series behind."""
    states.forget(namespace, name)
    _remove(lock_wait, namespace, name)
    for metric in (runs, duration):
        for labels in _label_sets(metric):
            if labels[:2] == (namespace, name):
                metric.remove(*labels)


def state_of(status: MigrationStatus) -> dict[str, float | None]:
    """The per-object gauge values that a DatabaseMigration's status implies."""
    found = status.get("conditions") or []
    ready = conditions.find(found, constants.READY) or {}
    successes = [r for r in status.get("history") or [] if r.get("result") == "Succeeded"]
    active = status.get("activeJob") or {}
    pending_count = status.get("pendingCount")
    return {
        "ready": 1.0 if conditions.is_true(found, constants.READY) else 0.0,
        "stalled": 1.0 if conditions.is_true(found, constants.STALLED) else 0.0,
        "awaiting_approval": 1.0 if ready.get("reason") == Reason.AWAITING_APPROVAL else 0.0,
        "failing": 1.0 if int(status.get("failures") or 0) > 0 else 0.0,
        "drift": 1.0 if conditions.is_true(found, constants.DRIFTED) else 0.0,
        "last_success": _timestamp(successes[0].get("finishedAt")) if successes else None,
        "running_since": _timestamp(active.get("startedAt")) if active else None,
        "pending": float(pending_count) if isinstance(pending_count, int) else None,
        "gated_pods": float(status.get("gatedPods") or 0),
    }


def _timestamp(value: Any) -> float | None:
    moment = timestamps.parse(value)
    return moment.timestamp() if moment else None


def exposition() -> bytes:
    return generate_latest(REGISTRY)


def _remove(metric: Histogram, namespace: str, name: str) -> None:
    with contextlib.suppress(KeyError):  # no series for this object yet
        metric.remove(namespace, name)


def _label_sets(metric: Counter | Histogram) -> list[tuple[str, ...]]:
    # prometheus-client keeps children by label values; it has no public listing API.
    with metric._lock:
        return [tuple(labels) for labels in metric._metrics]
