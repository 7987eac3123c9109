"""A Job Lockstep deleted stays out of the cache until its DELETED event, whatever lags behind."""

from __future__ import annotations

from typing import Any

from lockstep.controller import cache as cache_module
from lockstep.controller.cache import Cache


def job(name: str, uid: str) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": "shop",
            "uid": uid,
            "labels": {"lockstep.dev/migration": "m", "lockstep.dev/database": "db"},
        },
        "status": {"conditions": [{"type": "Complete", "status": "True"}]},
    }


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def test_an_event_from_before_the_deletion_does_not_bring_the_job_back() -> None:
    cache = Cache()
    cache.put_job(job("m-1", "u1"))
    cache.job_deleted(("shop", "m-1"))
    cache.put_job(job("m-1", "u1"))  # a lagging stream's older event
    assert cache.job(("shop", "m-1")) is None
    assert cache.jobs_of(("shop", "m")) == []


def test_the_deleted_event_ends_the_memory() -> None:
    cache = Cache()
    cache.put_job(job("m-1", "u1"))
    cache.job_deleted(("shop", "m-1"))
    cache.drop_job(("shop", "m-1"))  # the watch's DELETED event
    cache.put_job(job("m-1", "u1"))
    assert cache.job(("shop", "m-1")) is not None


def test_a_new_job_of_the_same_name_is_cached() -> None:
    cache = Cache()
    cache.put_job(job("m-1", "u1"))
    cache.job_deleted(("shop", "m-1"))
    cache.put_job(job("m-1", "u2"))
    assert cache.job(("shop", "m-1"))["metadata"]["uid"] == "u2"
    cache.put_job(job("m-1", "u2"))  # and its later events too
    assert cache.jobs_of(("shop", "m"))[0]["metadata"]["uid"] == "u2"


def test_the_memory_expires_when_no_deleted_event_comes() -> None:
    clock = Clock()
    cache = Cache(clock=clock)
    cache.put_job(job("m-1", "u1"))
    cache.job_deleted(("shop", "m-1"))
    clock.now = cache_module.DELETED_JOB_MEMORY_SECONDS + 1
    cache.put_job(job("m-2", "u2"))
    cache.job_deleted(("shop", "m-2"))  # each deletion forgets the expired ones first
    assert list(cache._deleted_jobs) == [("shop", "m-2")]
    assert list(cache._deleted_job_uids) == ["u2"]
    cache.put_job(job("m-1", "u1"))
    assert cache.job(("shop", "m-1")) is not None
    cache.put_pod(pod("m-1-a", "m-1", "u1"))  # its pods' memory expired with it
    assert cache.has_pod(("shop", "m-1-a"))


def test_a_job_never_cached_is_deleted_without_memory() -> None:
    cache = Cache()
    cache.job_deleted(("shop", "m-9"))
    assert cache._deleted_jobs == {}


def pod(name: str, job_name: str, job_uid: str) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": "shop",
            "uid": f"pod-{name}",
            "labels": {"job-name": job_name, "lockstep.dev/migration": "m"},
            "ownerReferences": [{"kind": "Job", "name": job_name, "uid": job_uid}],
            "creationTimestamp": "2026-12-07T00:00:00Z",
        },
        "status": {"phase": "Succeeded"},
    }


def test_the_pods_of_a_deleted_job_leave_the_cache_with_it() -> None:
    cache = Cache()
    cache.put_job(job("m-1", "u1"))
    cache.put_job(job("m-2", "u2"))
    cache.put_pod(pod("m-1-a", "m-1", "u1"))
    cache.put_pod(pod("m-2-a", "m-2", "u2"))
    cache.job_deleted(("shop", "m-1"))
    assert not cache.has_pod(("shop", "m-1-a"))
    assert cache.pod_of_job("shop", "m-1") is None
    assert cache.has_pod(("shop", "m-2-a"))  # another Job's pod stays
    assert cache.sizes()["pods"] == 1


def test_a_deleted_jobs_pod_stays_out_after_the_jobs_deleted_event() -> None:
    cache = Cache()
    cache.put_job(job("m-1", "u1"))
    cache.put_pod(pod("m-1-a", "m-1", "u1"))
    cache.job_deleted(("shop", "m-1"))
    cache.drop_job(("shop", "m-1"))  # the Job's DELETED event comes before the pod's
    cache.put_pod(pod("m-1-a", "m-1", "u1"))  # a lagging stream's older pod event
    assert not cache.has_pod(("shop", "m-1-a"))


def test_the_pod_of_a_new_job_of_the_same_name_is_cached() -> None:
    cache = Cache()
    cache.put_job(job("m-1", "u1"))
    cache.job_deleted(("shop", "m-1"))
    cache.put_job(job("m-1", "u2"))
    cache.put_pod(pod("m-1-b", "m-1", "u2"))
    assert cache.pod_of_job("shop", "m-1")["metadata"]["name"] == "m-1-b"
