"""Reading Kubernetes objects into planning facts: Job state, lock sidecar state, runner report."""

from __future__ import annotations

from datetime import UTC, datetime

from lockstep.controller import cluster_facts

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_job_view_reads_terminal_conditions_only() -> None:
    job = {
        "metadata": {
            "name": "shop-a1b2c3d4-r1",
            "labels": {
                "lockstep.dev/spec-hash": "a1b2c3d4",
                "lockstep.dev/attempt": "1",
                "lockstep.dev/direction": "down",
            },
        },
        "status": {
            "startTime": "2026-01-01T00:00:00Z",
            "conditions": [{"type": "FailureTarget", "status": "True"}],
        },
    }
    view = cluster_facts.job_view(job)
    assert (view.state, view.attempt, view.downgrade, view.started_at) == ("Active", 1, True, T0)
    job["status"]["conditions"].append(
        {"type": "Failed", "status": "True", "reason": "DeadlineExceeded", "message": "too slow"}
    )
    job["status"]["completionTime"] = "2026-01-01T00:01:00Z"
    view = cluster_facts.job_view(job)
    assert (view.state, view.reason, view.message) == ("Failed", "DeadlineExceeded", "too slow")


def test_runner_report_is_json_or_nothing() -> None:
    assert cluster_facts.runner_report('{"result": "Failed", "reason": "ChecksumMismatch"}') == {
        "result": "Failed",
        "reason": "ChecksumMismatch",
    }
    assert cluster_facts.runner_report("Traceback (most recent call last): ...") == {}
    assert cluster_facts.runner_report("[1, 2]") == {}


def test_lock_wait_is_read_from_the_sidecar_status() -> None:
    waiting = {
        "status": {
            "initContainerStatuses": [
                {
                    "name": "lockstep-lock",
                    "started": False,
                    "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}},
                }
            ]
        }
    }
    wait = cluster_facts.lock_wait(waiting, "j")
    assert wait is not None and not wait.timed_out and wait.since == T0
    gave_up = {
        "status": {
            "initContainerStatuses": [
                {
                    "name": "lockstep-lock",
                    "started": False,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {"terminated": {"exitCode": 3}},
                }
            ]
        }
    }
    assert cluster_facts.lock_wait(gave_up, "j") == cluster_facts.LockWait(
        job="j", since=None, timed_out=True
    )
    holding = {
        "status": {
            "initContainerStatuses": [
                {"name": "lockstep-lock", "started": True, "state": {"running": {}}}
            ]
        }
    }
    assert cluster_facts.lock_wait(holding, "j") is None
