"""The run metrics' collector against the prometheus-client children it replaced, byte for byte.

`Children` is metrics.py's code before the collector: a Counter and two Histograms in a private
registry, and `forget` removing each child of the object. Both get the same observations; the
expositions must be identical, `_created` included (a fixed clock gives both the same times),
and so must the collector's own writer (`text()`) and `generate_latest` over its families.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator, Sequence
from typing import Any

import prometheus_client
import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from lockstep.controller import metrics, run_metrics
from lockstep.controller.run_metrics import DURATION, LOCK_WAIT, RUNS, RunMetrics

NOW = 1767225600.123456

Op = tuple[Any, ...]  # (method, *arguments), the same for Children and RunMetrics


class Children:
    """The three metrics as prometheus-client children (metrics.py before the collector)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.runs = Counter(*RUNS, registry=self.registry)
        self.duration = Histogram(
            *DURATION, buckets=run_metrics.RUN_BUCKETS, registry=self.registry
        )
        self.lock_wait = Histogram(
            *LOCK_WAIT, buckets=run_metrics.LOCK_BUCKETS, registry=self.registry
        )
        self.series: set[tuple[str, ...]] = set()  # the runs and duration children made

    def record_run(self, ns: str, name: str, tool: str, result: str, seconds: float | None) -> None:
        self.runs.labels(ns, name, tool, result).inc()
        self.series.add((ns, name, tool, result))
        if seconds is not None:
            self.duration.labels(ns, name, tool).observe(seconds)
            self.series.add((ns, name, tool))

    def record_lock_wait(self, ns: str, name: str, seconds: float) -> None:
        self.lock_wait.labels(ns, name).observe(seconds)

    def forget(self, ns: str, name: str) -> None:
        with contextlib.suppress(KeyError):
            self.lock_wait.remove(ns, name)
        for labels in [s for s in self.series if s[:2] == (ns, name)]:
            (self.runs if len(labels) == 4 else self.duration).remove(*labels)
            self.series.discard(labels)


def apply(target: Children | RunMetrics, ops: Sequence[Op]) -> None:
    for method, *arguments in ops:
        getattr(target, method)(*arguments)


def both(ops: Sequence[Op]) -> tuple[bytes, RunMetrics]:
    """The children's exposition and a collector, after the same observations."""
    children, collector = Children(), RunMetrics()
    apply(children, ops)
    apply(collector, ops)
    return generate_latest(children.registry), collector


def exposition(collector: RunMetrics) -> bytes:
    registry = CollectorRegistry(auto_describe=True)
    registry.register(collector)
    return generate_latest(registry)


@pytest.fixture(autouse=True)
def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(time, "time", lambda: NOW)
    yield


ODD = 'a "quoted"\\back\\slash\nnew line, ünïcode'

OPS: list[Op] = [
    ("record_run", "shop", "orders", "sql", "Succeeded", 3.0),
    ("record_lock_wait", "shop", "orders", 0.2),
    ("record_run", "shop", "users", "alembic", "Failed", 7200.0),  # exactly on a bound
    ("record_run", "shop", "orders", "sql", "Failed", 9000.0),  # above every bound: +Inf only
    ("record_run", "shop", "orders", "sql", "Succeeded", 0.5),  # a series seen again, after others
    (
        "record_run",
        "shop",
        "users",
        "alembic",
        "Succeeded",
        None,
    ),  # no duration: no histogram change
    (
        "record_run",
        "billing",
        "ledger",
        "flyway",
        "Succeeded",
        None,
    ),  # a counter without a histogram
    ("record_lock_wait", "billing", "ledger", 0.0),
    ("record_lock_wait", "billing", "ledger", 1800.5),
    ("record_run", ODD, ODD, ODD, ODD, 1.0),  # label values that need escaping
    ("record_lock_wait", ODD, ODD, 0.1),
    ("record_run", "shop", "gone", "sql", "Succeeded", 12.0),
    ("record_lock_wait", "shop", "gone", 3.0),
    ("record_run", "shop", "gone", "liquibase", "Failed", 1.0),
    ("forget", "shop", "gone"),  # a deleted migration: none of its series stay
    ("forget", "shop", "never-seen"),
    ("record_run", "shop", "back", "sql", "Succeeded", -1.0),
    ("forget", "shop", "back"),
    ("record_run", "shop", "back", "sql", "Failed", 2.0),  # after forget: a new series, at the end
    ("record_lock_wait", "shop", "nan", math.nan),
]


def test_the_collector_exports_what_the_children_did() -> None:
    children, collector = both(OPS)
    assert exposition(collector) == children
    text = children.decode()
    assert 'name="gone"' not in text
    assert r'namespace="a \"quoted\"\\back\\slash\nnew line, ünïcode"' in text
    assert "lockstep_migration_runs_created{" in text  # today's output has `_created`


def test_its_own_writer_is_generate_latest_to_the_byte() -> None:
    _, collector = both(OPS)
    assert collector.text().encode() == exposition(collector)


@pytest.mark.parametrize(
    "ops",
    [
        [],  # help and type only, no `_created` family
        [("record_run", "a", "b", "sql", "Succeeded", None)],  # empty histograms
        [("record_lock_wait", "a", "b", 0.3)],  # an empty counter
        [("record_run", "a", "b", "sql", "Succeeded", 3.0), ("forget", "a", "b")],  # all forgotten
    ],
)
def test_edges_match_too(ops: list[Op]) -> None:
    children, collector = both(ops)
    assert exposition(collector) == children
    assert collector.text().encode() == children


def test_without_created_series_as_prometheus_client_allows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(run_metrics, "CREATED", False)
    prometheus_client.disable_created_metrics()
    try:
        children, collector = both(OPS)
    finally:
        prometheus_client.enable_created_metrics()
    assert b"_created" not in children
    assert exposition(collector) == children
    assert collector.text().encode() == children


def test_created_is_when_the_series_began(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time, "time", lambda: 1000.0)
    collector = RunMetrics()
    collector.record_run("a", "b", "sql", "Succeeded", 3.0)
    monkeypatch.setattr(time, "time", lambda: 2000.0)
    collector.record_run("a", "b", "sql", "Succeeded", 4.0)
    text = collector.text()
    runs = 'lockstep_migration_runs_created{name="b",namespace="a",result="Succeeded",tool="sql"}'
    assert f"{runs} 1000.0\n" in text
    duration = 'lockstep_migration_duration_seconds_created{name="b",namespace="a",tool="sql"}'
    assert f"{duration} 1000.0\n" in text


def test_metrics_module_serves_its_registry_as_generate_latest_would() -> None:
    """/metrics: the collector's text, then prometheus-client's for the rest, in REGISTRY order."""
    metrics.record_run("ns-x", "m1", "sql", {"result": "Succeeded", "durationSeconds": 3})
    metrics.record_lock_wait("ns-x", "m1", -2.0)  # clamped to 0
    metrics.record_run("ns-x", "m2", "sql", {"result": "Failed"})
    metrics.set_state("ns-x", "m1", {"ready": 1.0})
    metrics.record_reconcile("ok", 0.01)
    try:
        served = metrics.exposition()
        assert served == generate_latest(metrics.REGISTRY)
        text = served.decode()
        assert text.index("lockstep_migration_runs_total") < text.index("lockstep_gate_admissions")
        assert 'lockstep_lock_wait_seconds_bucket{le="0.1",name="m1",namespace="ns-x"} 1.0' in text
    finally:
        metrics.forget("ns-x", "m1")
        metrics.forget("ns-x", "m2")
    assert 'namespace="ns-x"' not in metrics.exposition().decode()
