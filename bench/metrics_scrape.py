"""What one Prometheus scrape of the operator's /metrics costs at N migrations.

    PYTHONPATH=operator .venv/bin/python bench/metrics_scrape.py [--sizes 100,1000,10000]

In one process, no cluster: N migrations' series put into `lockstep.controller.metrics` as the
reconciler puts them (the nine state gauges of a settled migration; with `--runs`, also one
finished run each: the runs counter and the duration and lock-wait histograms), then the
exposition (`metrics.exposition()`, what the /metrics handler serves) built `--repeats` times;
the median CPU seconds and the size are printed.

The floor is the least an exporter that writes each line on its own must do for the same
samples: the same lines of text (`name{namespace="...",name="..."} value`), each formatted by
one f-string from the values already at hand (its labels joined for that line), joined and
encoded; no help or type lines, no label checks, no escaping. The operator's own writers
(`controller/run_metrics.py`, `controller/state_gauges.py`) do not write each line on its own:
a series' labels are escaped and joined once for all its samples and each distinct value is
formatted once, so they can come in under the floor.

The /metrics handler formats the scrape on a worker thread of the operator (the "metrics"
thread of `controller/endpoints.py`), not on its event loop; but formatting holds the GIL,
which the loop gets back only at each switch interval, so the scrape's CPU is still the
operator's and slows the reconciler while it lasts (issue 21's product note: at 10,000
migrations, under a loaded start, a scrape did not answer within 5 s).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from lockstep.controller import metrics

SETTLED = {
    "ready": 1.0,
    "stalled": 0.0,
    "awaiting_approval": 0.0,
    "failing": 0.0,
    "drift": 0.0,
    "last_success": 1.7e9,
    "running_since": None,
    "pending": 0.0,
    "gated_pods": 0.0,
}


def fill(size: int, runs: bool) -> list[tuple[str, str]]:
    keys = [(f"team-{i % 100:03d}", f"migration-{i:05d}") for i in range(size)]
    for namespace, name in keys:
        metrics.set_state(namespace, name, SETTLED)
        if runs:
            metrics.record_run(
                namespace, name, "sql", {"result": "Succeeded", "durationSeconds": 3}
            )
            metrics.record_lock_wait(namespace, name, 0.2)
    return keys


def floor_builder() -> Callable[[], bytes]:
    """The same samples as plain lines: read from the collectors once, untimed; the floor
    formats them."""
    samples = [
        (sample.name, sample.labels, sample.value)
        for family in metrics.REGISTRY.collect()
        for sample in family.samples
    ]

    def build() -> bytes:
        lines = []
        for name, labels, value in samples:
            pairs = ",".join(f'{key}="{text}"' for key, text in labels.items())
            lines.append(f"{name}{{{pairs}}} {value}")
        return ("\n".join(lines) + "\n").encode()

    return build


def cpu_seconds(build: Callable[[], bytes], repeats: int) -> tuple[float, int]:
    times, size = [], 0
    for _ in range(repeats):
        started = time.process_time()
        size = len(build())
        times.append(time.process_time() - started)
    return statistics.median(times), size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--runs", action="store_true", help="one finished run per migration")
    args = parser.parse_args()
    print(f"{'N':>7} {'exposition s':>13} {'floor s':>9} {'ratio':>6} {'MB':>7} {'floor MB':>9}")
    for size in [int(s) for s in args.sizes.split(",")]:
        keys = fill(size, args.runs)
        served, served_size = cpu_seconds(metrics.exposition, args.repeats)
        floor, floor_size = cpu_seconds(floor_builder(), args.repeats)
        for namespace, name in keys:  # each size on its own
            metrics.forget(namespace, name)
        print(
            f"{size:7d} {served:13.3f} {floor:9.3f} {served / floor:5.1f}x "
            f"{served_size / 1e6:7.1f} {floor_size / 1e6:9.1f}"
        )


if __name__ == "__main__":
    main()
