"""A finished Job is cached as a record that gives back what every reader of a cached Job reads."""

from __future__ import annotations

from typing import Any

import pytest

from lockstep.controller import cluster_facts, kept_fields
from lockstep.controller.cache import Cache

LABELS = {
    "app.kubernetes.io/managed-by": "lockstep",
    "lockstep.dev/migration": "m",
    "lockstep.dev/database": "db",
    "lockstep.dev/spec-hash": "abcd1234",
    "lockstep.dev/attempt": "2",
    "lockstep.dev/direction": "down",
    "lockstep.dev/phase": "migrate",
}


def job(status: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": "m-1",
            "namespace": "shop",
            "uid": "u-1",
            "labels": LABELS,
            "resourceVersion": "42",
            "managedFields": [{"manager": "kube-controller-manager"}],
        },
        "spec": {"template": {"spec": {"containers": [{"name": "migrate"}]}}},
        "status": status,
    }


SUCCEEDED = {
    "startTime": "2026-12-07T10:00:00Z",
    "completionTime": "2026-12-07T10:00:09Z",
    "succeeded": 1,
    "conditions": [
        {
            "type": "SuccessCriteriaMet",
            "status": "True",
            "lastTransitionTime": "2026-12-07T10:00:08Z",
        },
        {"type": "Complete", "status": "True", "lastTransitionTime": "2026-12-07T10:00:09Z"},
    ],
}
FAILED = {  # a failed Job has no completionTime: its finish is the condition's time
    "startTime": "2026-12-07T10:00:00Z",
    "failed": 1,
    "conditions": [
        {"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded"},
        {
            "type": "Failed",
            "status": "True",
            "reason": "BackoffLimitExceeded",
            "message": "Job has reached the specified backoff limit",
            "lastTransitionTime": "2026-12-07T10:00:11Z",
        },
    ],
}


@pytest.mark.parametrize("status", [SUCCEEDED, FAILED], ids=["succeeded", "failed"])
def test_the_record_reads_as_the_job_did(status: dict[str, Any]) -> None:
    cache = Cache()
    cache.put_job(job(status))
    assert isinstance(cache._jobs[("shop", "m-1")], kept_fields.FinishedJob)
    cached = cache.job(("shop", "m-1"))
    assert cached is not None
    assert cluster_facts.job_view(cached) == cluster_facts.job_view(job(status))
    assert cached["metadata"]["uid"] == "u-1"
    assert cached["metadata"]["labels"] == LABELS
    assert cache.jobs_of(("shop", "m")) == [cached]


def test_a_running_job_stays_a_slim_body_and_moves_to_a_record_when_it_ends() -> None:
    cache = Cache()
    cache.put_job(job({"startTime": "2026-12-07T10:00:00Z", "active": 1}))
    assert isinstance(cache._jobs[("shop", "m-1")], dict)
    assert [j["metadata"]["name"] for j in cache.active_jobs_on_database("db")] == ["m-1"]
    cache.put_job(job(SUCCEEDED))
    assert cache.active_jobs_on_database("db") == []
    assert cache.jobs_of(("shop", "m"))[0]["status"]["completionTime"] == "2026-12-07T10:00:09Z"


def test_a_deleted_finished_job_is_remembered_by_its_uid() -> None:
    cache = Cache()
    cache.put_job(job(SUCCEEDED))
    cache.job_deleted(("shop", "m-1"))
    cache.put_job(job(SUCCEEDED))  # a lagging event from before the deletion
    assert cache.job(("shop", "m-1")) is None
