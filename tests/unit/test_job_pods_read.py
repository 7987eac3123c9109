"""The cache keeps a Job's pods only while a pass may read them (ADR 0015 point 10)."""

from __future__ import annotations

from typing import Any

from lockstep.controller.cache import Cache


def job(name: str, finished: str | None, phase: str = "migrate") -> dict[str, Any]:
    conditions = [{"type": "Complete", "status": "True"}] if finished else []
    return {
        "metadata": {
            "name": name,
            "namespace": "shop",
            "uid": f"uid-{name}",
            "labels": {
                "lockstep.dev/migration": "m",
                "lockstep.dev/database": "db",
                "lockstep.dev/phase": phase,
            },
        },
        "status": {"conditions": conditions, **({"completionTime": finished} if finished else {})},
    }


def pod(job_name: str) -> dict[str, Any]:
    return {
        "metadata": {
            "name": f"{job_name}-pod",
            "namespace": "shop",
            "uid": f"pod-{job_name}",
            "labels": {"job-name": job_name, "lockstep.dev/migration": "m"},
            "ownerReferences": [{"kind": "Job", "name": job_name, "uid": f"uid-{job_name}"}],
            "creationTimestamp": "2026-12-07T00:00:00Z",
        },
        "status": {"phase": "Succeeded"},
    }


def migration(status: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "m", "namespace": "shop"}, "spec": {}, "status": status}


def cached_pods(cache: Cache) -> set[str]:
    return {name for _, name in cache._pods}


def test_a_release_historys_pods_are_not_cached() -> None:
    # A start lists the Jobs first, then the pods (controller.priming): the older releases'
    # pods are never read again, the newest one's outcome may still be unrecorded.
    cache = Cache()
    for n in range(1, 6):
        cache.put_job(job(f"m-{n}", f"2026-12-0{n}T00:00:00Z"))
    for n in range(1, 6):
        cache.put_pod(pod(f"m-{n}"))
    assert cached_pods(cache) == {"m-5-pod"}


def test_the_newest_pod_leaves_once_status_records_its_outcome() -> None:
    cache = Cache()
    cache.put_job(job("m-1", "2026-12-01T00:00:00Z"))
    cache.put_pod(pod("m-1"))
    assert cached_pods(cache) == {"m-1-pod"}
    cache.put_migration(migration({"lastRun": {"job": "m-1"}}))
    assert cached_pods(cache) == set()
    cache.put_pod(pod("m-1"))  # a later event of that pod (the garbage collector's, say)
    assert cached_pods(cache) == set()


def test_a_running_jobs_pod_stays_until_its_outcome_is_written() -> None:
    cache = Cache()
    cache.put_migration(migration({"lastRun": {"job": "m-0"}}))
    cache.put_job(job("m-1", None))
    cache.put_pod(pod("m-1"))
    cache.put_job(job("m-1", "2026-12-01T00:00:00Z"))  # finished, not recorded yet
    assert cache.pod_of_job("shop", "m-1") is not None
    cache.update_status(("shop", "m"), {"lastRun": {"job": "m-1"}})  # the pass recorded it
    assert cache.pod_of_job("shop", "m-1") is None


def test_a_new_run_makes_the_finished_ones_pods_unread() -> None:
    cache = Cache()
    cache.put_job(job("m-1", "2026-12-01T00:00:00Z", phase="plan"))
    cache.put_job(job("m-2", "2026-12-02T00:00:00Z"))
    cache.put_pod(pod("m-1"))
    cache.put_pod(pod("m-2"))
    assert cached_pods(cache) == {"m-1-pod", "m-2-pod"}  # phases do not supersede each other
    cache.put_job(job("m-3", None))
    cache.put_pod(pod("m-3"))
    assert cached_pods(cache) == {"m-1-pod", "m-3-pod"}


def test_a_pod_whose_job_is_not_cached_is_kept() -> None:
    cache = Cache()
    cache.put_migration(migration({"lastRun": {"job": "m-1"}}))
    cache.put_pod(pod("m-1"))  # its Job's event has not come yet
    assert cached_pods(cache) == {"m-1-pod"}
