"""What the operator's cache keeps per migration, against keeping the watched bodies whole.

    PYTHONPATH=tools .venv/bin/python bench/cache_footprint.py [--migrations 1000]

A diagnostic for issue 21's memory goal, in one process, no cluster: N synthetic migrations
shaped like `bench/fleet.py`'s seeded fleet (a DatabaseMigration whose status records 5 runs,
5 finished Jobs, 5 pods with the runner's report), put into `controller.cache.Cache`; the
bytes Python allocates for them (tracemalloc), per migration. The floor is the same bodies
kept whole (what a cache of full bodies would hold). Synthetic shapes: the real fleet's bodies
carry more server-set metadata (managedFields of several managers), so "whole" is a low
estimate. What it does not see: Kopf, the metric series, timers, the allocator's retained pages.
"""

from __future__ import annotations

import argparse
import functools
import json
import tracemalloc
from collections.abc import Callable
from typing import Any

from lockstep.controller.cache import Cache


def labels(i: int, h: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/managed-by": "lockstep",
        "app.kubernetes.io/name": "lockstep",
        "lockstep.dev/migration": f"m-{i:05d}",
        "lockstep.dev/spec-hash": h[:8],
        "lockstep.dev/database": "a" * 40,
        "lockstep.dev/attempt": "0",
        "lockstep.dev/direction": "up",
        "lockstep.dev/phase": "migrate",
        "lockstep.dev/owner-uid": "u" * 36,
        "bench.lockstep.dev/shard": "a",
    }


def job(i: int, r: int) -> dict[str, Any]:
    h = f"{i:08x}{r:056x}"
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": f"m-{i:05d}-{h[:8]}",
            "namespace": f"fleet-{i % 100:02d}",
            "uid": f"{i}-{r}-" + "x" * 30,
            "labels": labels(i, h),
            "resourceVersion": str(100000 + i * 10 + r),
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "managedFields": [{"manager": "x", "fieldsV1": {"f:metadata": {}}}] * 3,
        },
        "spec": {
            "template": {"spec": {"containers": [{"name": "migrate", "image": "lockstep:dev"}]}}
        },
        "status": {
            "startTime": "2026-01-01T00:00:00Z",
            "completionTime": "2026-01-01T00:00:09Z",
            "succeeded": 1,
            "conditions": [
                {"type": t, "status": "True", "lastTransitionTime": "2026-01-01T00:00:09Z"}
                for t in ("SuccessCriteriaMet", "Complete")
            ],
        },
    }


def terminated(c: str, m: str | None) -> dict[str, Any]:
    return {
        "name": c,
        "image": "lockstep:dev",
        "ready": False,
        "restartCount": 0,
        "started": False,
        "state": {
            "terminated": {
                "exitCode": 0,
                "reason": "Completed",
                "startedAt": "2026-01-01T00:00:00Z",
                "finishedAt": "2026-01-01T00:00:09Z",
                **({"message": m} if m else {}),
            }
        },
    }


def pod(i: int, r: int) -> dict[str, Any]:
    j = job(i, r)
    report = json.dumps({"applied": ["1", "2"], "from": None, "to": "2"})
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            **j["metadata"],
            "name": j["metadata"]["name"] + "-x",
            "labels": {**j["metadata"]["labels"], "job-name": j["metadata"]["name"]},
        },
        "spec": {"nodeName": "n", "containers": [{"name": "migrate", "image": "lockstep:dev"}]},
        "status": {
            "phase": "Succeeded",
            "startTime": "2026-01-01T00:00:00Z",
            "initContainerStatuses": [terminated("lock", None)],
            "containerStatuses": [terminated("migrate", report)],
        },
    }


def migration(i: int) -> dict[str, Any]:
    run = {
        "job": f"m-{i:05d}-aaaaaaaa",
        "direction": "Upgrade",
        "result": "Succeeded",
        "reason": "Succeeded",
        "message": "applied 1, 2",
        "specHash": "aaaaaaaa",
        "finishedAt": "2026-01-01T00:00:09Z",
        "startedAt": "2026-01-01T00:00:00Z",
        "durationSeconds": 9.0,
        "to": "2",
    }
    return {
        "apiVersion": "lockstep.dev/v1alpha1",
        "kind": "DatabaseMigration",
        "metadata": {
            "name": f"m-{i:05d}",
            "namespace": f"fleet-{i % 100:02d}",
            "uid": f"{i}-" + "u" * 34,
            "generation": 1,
            "labels": {"bench.lockstep.dev/shard": "a"},
            "resourceVersion": str(i),
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "spec": {
            "tool": "sql",
            "source": {"configMap": "files"},
            "database": {"urlSecretRef": {"name": "db", "key": f"m-{i:05d}"}, "engine": "sqlite"},
            "target": "head",
            "timeouts": {"lockWaitSeconds": 600, "runSeconds": 3600},
            "retry": {"backoffLimit": 3},
            "downgrade": "Refuse",
            "approval": {"policy": "Destructive"},
            "drift": {"check": "Off"},
            "image": "lockstep:dev",
        },
        "status": {
            "observedGeneration": 1,
            "specHash": "a" * 64,
            "targetRevision": "head",
            "appliedRevision": "2",
            "failures": 0,
            "pendingCount": 0,
            "lastRun": run,
            "history": [dict(run) for _ in range(5)],
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "Succeeded",
                    "message": "database is at revision 2",
                    "lastTransitionTime": "2026-01-01T00:00:09Z",
                    "observedGeneration": 1,
                }
            ],
        },
    }


def allocated(fill: Callable[[list[str]], object], texts: list[str]) -> int:
    """Bytes still allocated after `fill(texts)` (what it keeps), by tracemalloc."""
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    kept = fill(texts)
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del kept
    return after - before


def _cached(put: str, texts: list[str]) -> Cache:
    cache = Cache()
    for text in texts:
        getattr(cache, put)(json.loads(text))
    return cache


def _decoded(texts: list[str]) -> list[Any]:
    return [json.loads(text) for text in texts]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--migrations", type=int, default=1000)
    n = parser.parse_args().migrations
    rows: list[tuple[str, Callable[[int], list[dict[str, Any]]], str]] = [
        ("DatabaseMigration", lambda i: [migration(i)], "put_migration"),
        ("5 Jobs", lambda i: [job(i, r) for r in range(5)], "put_job"),
        ("5 pods", lambda i: [pod(i, r) for r in range(5)], "put_pod"),
    ]
    print(f"{'per migration, KB':<22}{'cache':>10}{'whole bodies':>14}{'ratio':>8}")
    totals = [0, 0]
    for what, make, put in rows:
        # Each body decoded inside the measurement, one by one as watch events are (no strings
        # shared between bodies), then dropped: what stays is what the cache keeps of it.
        texts = [json.dumps(body) for i in range(n) for body in make(i)]
        slim = allocated(functools.partial(_cached, put), texts)
        whole = allocated(_decoded, texts)
        totals[0] += slim
        totals[1] += whole
        print(f"{what:<22}{slim / n / 1024:>10.1f}{whole / n / 1024:>14.1f}{slim / whole:>7.2f}x")
    print(
        f"{'total':<22}{totals[0] / n / 1024:>10.1f}{totals[1] / n / 1024:>14.1f}"
        f"{totals[0] / totals[1]:>7.2f}x   (n={n})"
    )


if __name__ == "__main__":
    main()
