"""Prometheus metrics (prometheus-client). Names follow Prometheus conventions: base units,
`_total` for counters, `_timestamp_seconds` for times. Labels are namespace, name, tool and result:
never a URL, a Secret or anything taken from one."""

from __future__ import annotations

import importlib.metadata
import platform
from collections.abc import Mapping
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from lockstep import __version__, conditions, constants, timestamps
from lockstep.constants import Reason
from lockstep.controller import run_metrics, state_gauges
from lockstep.status import MigrationStatus, Run

# Every series the operator exports, in /metrics order: the run metrics' collector, then
# CLIENT_REGISTRY, what prometheus-client formats (the metrics below), then the state gauges.
REGISTRY: Final = CollectorRegistry(auto_describe=True)
CLIENT_REGISTRY: Final = CollectorRegistry(auto_describe=True)

# Reconciles take from a millisecond to seconds (the run metrics' buckets: run_metrics).
RECONCILE_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

# The per-migration runs counter and duration and lock-wait histograms: one collector over
# tables, no Counter or Histogram child per series.
migration_runs: Final = run_metrics.RunMetrics()
REGISTRY.register(migration_runs)
admissions: Final = Counter(
    "lockstep_gate_admissions",
    "Pods the rollout gate webhook saw, by decision (gated or allowed)",
    ["decision"],
    registry=CLIENT_REGISTRY,
)
reconciles: Final = Counter(
    "lockstep_reconcile",
    "Reconcile passes, by result (ok or error)",
    ["result"],
    registry=CLIENT_REGISTRY,
)
reconcile_duration: Final = Histogram(
    "lockstep_reconcile_duration_seconds",
    "How long one reconcile pass took",
    ["result"],
    buckets=RECONCILE_BUCKETS,
    registry=CLIENT_REGISTRY,
)
leader: Final = Gauge(
    "lockstep_leader",
    "1 when this replica holds the leader Lease and reconciles, 0 on a standby",
    registry=CLIENT_REGISTRY,
)
# The name client-go uses, so existing leader-election dashboards and alerts work unchanged.
leader_election_master_status: Final = Gauge(
    "leader_election_master_status",
    "1 when this replica is the leader of the named election",
    ["name"],
    registry=CLIENT_REGISTRY,
)

# Which build runs (the kube-state-metrics convention: a constant 1 with the facts as labels), so
# dashboards can show versions and alerts can join on them.
build_info: Final = Gauge(
    "lockstep_build_info",
    "1, labelled with the version of this Lockstep build and of what it runs on",
    ["version", "python_version", "kopf_version"],
    registry=CLIENT_REGISTRY,
)
build_info.labels(
    version=__version__,
    python_version=platform.python_version(),
    kopf_version=importlib.metadata.version("kopf"),
).set(1)

# The per-migration state gauges (ready, failing, ...): one collector, no Gauge child per series.
states: Final = state_gauges.MigrationStates()
REGISTRY.register(CLIENT_REGISTRY)
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
    seconds = run.get("durationSeconds")
    observed = float(seconds) if isinstance(seconds, int | float) else None
    migration_runs.record_run(namespace, name, tool, result, observed)


def record_lock_wait(namespace: str, name: str, seconds: float) -> None:
    migration_runs.record_lock_wait(namespace, name, max(seconds, 0.0))


def set_state(namespace: str, name: str, state: Mapping[str, float | None]) -> None:
    """Per-object gauges from the status just written; None removes a series (e.g. no Job runs)."""
    states.set(namespace, name, state)


def forget(namespace: str, name: str) -> None:
    """A deleted DatabaseMigration leaves no series behind."""
    states.forget(namespace, name)
    migration_runs.forget(namespace, name)


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
    """What /metrics serves: REGISTRY in the Prometheus text format. The run metrics and the state
    gauges write their own lines (the bytes generate_latest gives for them, in a fraction of its
    time); the few other series are prometheus-client's."""
    client = generate_latest(CLIENT_REGISTRY)
    return migration_runs.text().encode() + client + states.text().encode()
