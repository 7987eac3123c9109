"""The per-DatabaseMigration run metrics, as one Prometheus collector over tables of rows.

`lockstep_migration_runs_total` (by namespace, name, tool and result) and the histograms
`lockstep_migration_duration_seconds` (by namespace, name and tool) and
`lockstep_lock_wait_seconds` (by namespace and name). As prometheus-client `Counter` and
`Histogram` children, a migration with one finished run held three children (7.6 KB: a value
object with its own lock per bucket) and at 10,000 such migrations these three families took
2.7 s of CPU per scrape. Here a series is one small immutable row (a count, or bucket counts
and a sum; and when the series began), 1.6 KB a migration, and samples are made at scrape time
only: the custom-collector pattern of `state_gauges`. Same names, help, type, labels, `le`
values and `_created` samples as the children gave.

Through `generate_latest` that still took 2.4 s: it formats each of the 31 samples a migration
has on its own (sorting, checking and escaping the labels every time). So `text()` writes these
three families itself, label values escaped once per series: 0.22 s. The tests
(tests/unit/test_run_metrics.py) prove both byte for byte: the collector's families against
the children's exposition, and `text()` against `generate_latest`.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Final, Generic, NamedTuple, TypeVar

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from lockstep.controller.metrics_text import Numbers, braced, go, header, label_order, pairs

# Migrations can take from a second to an hour; lock waits from nothing to many minutes.
RUN_BUCKETS: Final = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200)
LOCK_BUCKETS: Final = (0.1, 0.5, 1, 5, 15, 30, 60, 300, 600, 1800)

OBJECT: Final = ("namespace", "name")
# (name, help, label names) of each family, in the order they are exported.
RUNS: Final = (
    "lockstep_migration_runs",
    "Migration Jobs that finished, by result (Succeeded or Failed)",
    (*OBJECT, "tool", "result"),
)
DURATION: Final = (
    "lockstep_migration_duration_seconds",
    "How long finished migration Jobs ran",
    (*OBJECT, "tool"),
)
LOCK_WAIT: Final = (
    "lockstep_lock_wait_seconds",
    "How long migration Jobs waited for the database's migration lock",
    OBJECT,
)


def _created_series() -> bool:
    """Whether counters and histograms export `_created` samples: prometheus-client's own rule
    (`PROMETHEUS_DISABLE_CREATED_SERIES`, read once at start-up as it reads it)."""
    disabled = os.environ.get("PROMETHEUS_DISABLE_CREATED_SERIES", "False")
    return disabled.lower() not in ("true", "1", "t")


CREATED: Final = _created_series()

Key = tuple[str, ...]  # label values, in the family's label order: namespace and name first


class Count(NamedTuple):
    value: float
    created: float  # Unix time the series began


class Buckets(NamedTuple):
    counts: tuple[float, ...]  # observations per bucket, not cumulative; the last is +Inf
    total: float  # the sum of the observations
    created: float


RowT = TypeVar("RowT", Count, Buckets)
Snapshot = tuple[list[tuple[Key, Count]], list[tuple[Key, Buckets]], list[tuple[Key, Buckets]]]


class _Table(Generic[RowT]):
    """One family's rows by label values, in the order the series began (the order
    prometheus-client keeps children in), and each object's keys: forgetting one is no scan."""

    def __init__(self, name: str, documentation: str, labels: tuple[str, ...]) -> None:
        self.name = name
        self.documentation = documentation
        self.labels = labels
        self.order = label_order(labels)  # by name, as written
        self.rows: dict[Key, RowT] = {}
        self.by_object: dict[tuple[str, str], list[Key]] = {}

    def put(self, key: Key, row: RowT) -> None:
        if key not in self.rows:
            self.by_object.setdefault((key[0], key[1]), []).append(key)
        self.rows[key] = row

    def forget(self, namespace: str, name: str) -> None:
        for key in self.by_object.pop((namespace, name), ()):
            del self.rows[key]


class _Histogram(_Table[Buckets]):
    def __init__(
        self, name: str, documentation: str, labels: tuple[str, ...], buckets: Sequence[float]
    ) -> None:
        super().__init__(name, documentation, labels)
        self.bounds = (*(float(bound) for bound in buckets), math.inf)
        self.le = tuple(go(bound) for bound in self.bounds)
        self.split = sum(label < "le" for label in labels)  # `le` after so many labels, sorted

    def observe(self, key: Key, amount: float) -> None:
        """As prometheus-client's `Histogram.observe`: the amount in the sum, and one in the
        first bucket that holds it (in none for NaN)."""
        row = self.rows.get(key)
        if row is None:
            row = Buckets((0.0,) * len(self.bounds), 0.0, time.time())
        counts = list(row.counts)
        for index, bound in enumerate(self.bounds):
            if amount <= bound:
                counts[index] += 1
                break
        self.put(key, Buckets(tuple(counts), row.total + amount, row.created))


class RunMetrics(Collector):
    """Finished runs, their durations and their lock waits, by migration."""

    def __init__(self) -> None:
        self._runs: _Table[Count] = _Table(*RUNS)
        self._durations = _Histogram(*DURATION, RUN_BUCKETS)
        self._lock_waits = _Histogram(*LOCK_WAIT, LOCK_BUCKETS)
        # One lock for the three tables: the scrape may run on another thread, and sees a run
        # counted together with its duration.
        self._lock = threading.Lock()

    def record_run(
        self, namespace: str, name: str, tool: str, result: str, seconds: float | None
    ) -> None:
        """Count one finished run, and observe how long it ran when that is known."""
        key = (namespace, name, tool, result)
        with self._lock:
            row = self._runs.rows.get(key)
            if row is None:
                row = Count(0.0, time.time())
            self._runs.put(key, Count(row.value + 1, row.created))
            if seconds is not None:
                self._durations.observe((namespace, name, tool), seconds)

    def record_lock_wait(self, namespace: str, name: str, seconds: float) -> None:
        with self._lock:
            self._lock_waits.observe((namespace, name), seconds)

    def forget(self, namespace: str, name: str) -> None:
        """Drop this object's series (costs its own series, not a pass over all of them)."""
        with self._lock:
            for table in (self._runs, self._durations, self._lock_waits):
                table.forget(namespace, name)

    def _snapshot(self) -> Snapshot:
        # Rows are immutable, so a shallow copy under the lock is a consistent snapshot.
        with self._lock:
            return (
                list(self._runs.rows.items()),
                list(self._durations.rows.items()),
                list(self._lock_waits.rows.items()),
            )

    def describe(self) -> Iterator[Metric]:
        yield CounterMetricFamily(RUNS[0], RUNS[1], labels=RUNS[2])
        for table in (self._durations, self._lock_waits):
            yield HistogramMetricFamily(table.name, table.documentation, labels=table.labels)

    def collect(self) -> Iterator[Metric]:
        runs, durations, lock_waits = self._snapshot()
        counter = CounterMetricFamily(RUNS[0], RUNS[1], labels=RUNS[2])
        for key, count in runs:
            counter.add_metric(key, count.value, created=count.created if CREATED else None)
        yield counter
        yield _histogram_family(self._durations, durations)
        yield _histogram_family(self._lock_waits, lock_waits)

    def text(self) -> str:
        """The three families in the Prometheus text format (0.0.4), exactly as
        `generate_latest` writes what `collect()` yields, in a fraction of its time."""
        runs, durations, lock_waits = self._snapshot()
        out: list[str] = []
        _counter_text(self._runs, runs, out)
        _histogram_text(self._durations, durations, out)
        _histogram_text(self._lock_waits, lock_waits, out)
        return "".join(out)


def _histogram_family(table: _Histogram, rows: list[tuple[Key, Buckets]]) -> Metric:
    family = HistogramMetricFamily(table.name, table.documentation, labels=table.labels)
    for key, row in rows:
        cumulative, running = [], 0.0
        for le, count in zip(table.le, row.counts, strict=True):
            running += count
            cumulative.append((le, running))
        family.add_metric(key, cumulative, row.total)
        if CREATED:  # HistogramMetricFamily has no `created`; the sample the child would give
            labels = dict(zip(table.labels, key, strict=True))
            family.samples.append(Sample(f"{table.name}_created", labels, row.created))
    return family


# --- the text format, as prometheus_client.exposition.generate_latest writes it ---------------


def _created_text(name: str, documentation: str, created: list[str], out: list[str]) -> None:
    # generate_latest moves `_created` samples into a gauge family of their own, after.
    if created:
        out.append(header(f"{name}_created", documentation, "gauge"))
        out.extend(created)


def _counter_text(table: _Table[Count], rows: list[tuple[Key, Count]], out: list[str]) -> None:
    total = f"{table.name}_total"
    out.append(header(total, table.documentation, "counter"))
    created: list[str] = []
    number = Numbers()
    for key, row in rows:
        labels = braced(pairs(table.labels, table.order, key))
        out.append(f"{total}{labels} {number(row.value)}\n")
        if CREATED:
            created.append(f"{table.name}_created{labels} {go(row.created)}\n")
    _created_text(table.name, table.documentation, created, out)


def _histogram_text(table: _Histogram, rows: list[tuple[Key, Buckets]], out: list[str]) -> None:
    name = table.name
    out.append(header(name, table.documentation, "histogram"))
    created: list[str] = []
    number = Numbers()  # the few distinct bucket counts, each formatted once
    for key, row in rows:
        label_pairs = pairs(table.labels, table.order, key)
        labels = braced(label_pairs)
        before = "".join(f"{pair}," for pair in label_pairs[: table.split])
        after = "".join(f",{pair}" for pair in label_pairs[table.split :])
        running = 0.0
        for le, count in zip(table.le, row.counts, strict=True):
            running += count
            text = number(running)
            out.append(f'{name}_bucket{{{before}le="{le}"{after}}} {text}\n')
        out.append(f"{name}_count{labels} {text}\n")  # the +Inf bucket's count
        out.append(f"{name}_sum{labels} {go(row.total)}\n")
        if CREATED:
            created.append(f"{name}_created{labels} {go(row.created)}\n")
    _created_text(name, table.documentation, created, out)
