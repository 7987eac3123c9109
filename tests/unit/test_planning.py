"""The reconcile decision, table by table: observed state in, one Decision out."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from lockstep.model import parse_spec
from lockstep.planning import chain, facts, history, runs
from lockstep.planning.facts import ConfigError, JobView, Observed, Outcome

NOW = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)
HASH = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9"
OLD_HASH = "ffffffff" + HASH[8:]

SPEC = {
    "tool": "sql",
    "source": {"configMapRef": {"name": "shop-migrations"}},
    "target": "head",
    "database": {"engine": "postgresql", "urlSecretRef": {"name": "shop-db", "key": "url"}},
    "retry": {"limit": 2, "backoffSeconds": 30, "maxBackoffSeconds": 100},
}


def observed(**changes: Any) -> Observed:
    spec_raw = {**SPEC, **changes.pop("spec", {})}
    base = Observed(
        name="shop",
        generation=3,
        spec=parse_spec(spec_raw),
        spec_hash=HASH,
        status={},
        now=NOW,
    )
    return replace(base, **changes)


def job(state: str = "Active", attempt: int = 0, spec_hash: str = HASH, **kw: Any) -> JobView:
    suffix = f"-r{attempt}" if attempt else ""
    return JobView(
        name=f"shop-{spec_hash[:8]}{suffix}",
        spec_hash=spec_hash[:8],
        attempt=attempt,
        state=state,  # type: ignore[arg-type]
        started_at=NOW - timedelta(seconds=20),
        finished_at=None if state == "Active" else NOW - timedelta(seconds=1),
        **kw,
    )


def condition(decision: facts.Decision, kind: str) -> dict[str, Any] | None:
    return next((c for c in decision.status["conditions"] if c["type"] == kind), None)


def reasons(decision: facts.Decision) -> list[str]:
    return [e.reason for e in decision.events]


def succeeded_status(spec_hash: str = HASH) -> dict[str, Any]:
    return {
        "specHash": spec_hash,
        "appliedRevision": "2",
        "lastRun": {
            "job": f"shop-{spec_hash[:8]}",
            "result": "Succeeded",
            "specHash": spec_hash[:8],
        },
        "history": [{"job": f"shop-{spec_hash[:8]}", "result": "Succeeded"}],
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Succeeded",
                "message": "database is at revision 2",
                "lastTransitionTime": "2026-11-01T00:00:00Z",
                "observedGeneration": 3,
            }
        ],
    }


class TestFirstRun:
    def test_new_migration_creates_the_first_job(self) -> None:
        decision = chain.plan(observed())
        assert decision.create_job is not None
        assert decision.create_job.attempt == 0
        assert decision.create_job.target == "head"
        assert decision.status["activeJob"]["name"] == "shop-a1b2c3d4"
        assert reasons(decision) == ["JobCreated"]

    def test_reconciling_is_true_and_ready_false_while_the_job_is_created(self) -> None:
        decision = chain.plan(observed())
        assert condition(decision, "Ready")["status"] == "False"  # type: ignore[index]
        assert condition(decision, "Reconciling")["status"] == "True"  # type: ignore[index]
        assert condition(decision, "Stalled") is None

    def test_observed_generation_and_spec_hash_are_recorded(self) -> None:
        decision = chain.plan(observed())
        assert decision.status["observedGeneration"] == 3
        assert decision.status["specHash"] == HASH
        assert decision.status["targetRevision"] == "head"


class TestRunningJob:
    def test_active_job_is_adopted_not_recreated(self) -> None:
        decision = chain.plan(observed(jobs=(job("Active"),)))
        assert decision.create_job is None
        assert decision.status["activeJob"]["name"] == "shop-a1b2c3d4"
        assert condition(decision, "Ready")["reason"] == "JobRunning"  # type: ignore[index]
        assert decision.events == ()

    def test_a_job_of_the_previous_spec_is_awaited_before_a_new_run(self) -> None:
        decision = chain.plan(observed(jobs=(job("Active", spec_hash=OLD_HASH),)))
        assert decision.create_job is None
        assert condition(decision, "Ready")["reason"] == "WaitingForPreviousJob"  # type: ignore[index]

    def test_another_migrations_job_on_the_same_database_blocks(self) -> None:
        decision = chain.plan(observed(blocking_jobs=("billing-12345678",)))
        assert decision.create_job is None
        assert condition(decision, "Ready")["reason"] == "WaitingForJob"  # type: ignore[index]
        assert "billing-12345678" in condition(decision, "Ready")["message"]  # type: ignore[index]
        assert decision.requeue_after == chain.BLOCKED_RECHECK_SECONDS


class TestSuccess:
    def test_success_records_revision_history_and_ready(self) -> None:
        outcome = Outcome(
            job="shop-a1b2c3d4",
            succeeded=True,
            from_revision="1",
            to_revision="2",
            applied_revision="2",
        )
        decision = chain.plan(
            observed(jobs=(job("Succeeded"),), outcome=outcome, status={"specHash": HASH})
        )
        assert decision.create_job is None
        assert decision.status["appliedRevision"] == "2"
        assert decision.status["lastRun"]["result"] == "Succeeded"
        assert decision.status["lastRun"]["from"] == "1"
        assert decision.status["lastRun"]["durationSeconds"] == 19.0
        assert decision.status["history"][0]["job"] == "shop-a1b2c3d4"
        assert "activeJob" not in decision.status
        assert condition(decision, "Ready")["status"] == "True"  # type: ignore[index]
        assert condition(decision, "Reconciling") is None
        assert reasons(decision) == ["Succeeded"]

    def test_applied_image_is_recorded_for_image_based_tools(self) -> None:
        outcome = Outcome(job="shop-a1b2c3d4", succeeded=True, applied_revision="abc")
        spec = {"tool": "alembic", "image": "shop:1.4.2", "source": None}
        decision = chain.plan(observed(spec=spec, jobs=(job("Succeeded"),), outcome=outcome))
        assert decision.status["appliedImage"] == "shop:1.4.2"

    def test_settled_migration_does_nothing(self) -> None:
        decision = chain.plan(observed(status=succeeded_status()))
        assert decision.create_job is None
        assert decision.events == ()
        assert decision.requeue_after is None
        ready = condition(decision, "Ready")
        assert ready is not None and ready["lastTransitionTime"] == "2026-11-01T00:00:00Z"

    def test_history_keeps_the_newest_ten(self) -> None:
        status = {"specHash": HASH, "history": [{"job": f"old-{i}"} for i in range(10)]}
        outcome = Outcome(job="shop-a1b2c3d4", succeeded=True, applied_revision="2")
        decision = chain.plan(observed(status=status, jobs=(job("Succeeded"),), outcome=outcome))
        assert len(decision.status["history"]) == 10
        assert decision.status["history"][0]["job"] == "shop-a1b2c3d4"
        assert decision.status["history"][-1]["job"] == "old-8"

    def test_a_new_spec_after_success_starts_a_new_run(self) -> None:
        decision = chain.plan(observed(status=succeeded_status(OLD_HASH)))
        assert decision.create_job is not None
        assert decision.status["specHash"] == HASH


class TestFailureAndRetry:
    @pytest.mark.parametrize(("failures", "expected_delay"), [(1, 30), (2, 60), (3, 100), (7, 100)])
    def test_backoff_doubles_up_to_the_cap(self, failures: int, expected_delay: int) -> None:
        spec = parse_spec(SPEC)
        assert history.backoff_seconds(spec, failures) == expected_delay

    def test_first_failure_keeps_log_tail_and_schedules_a_retry(self) -> None:
        outcome = Outcome(
            job="shop-a1b2c3d4",
            succeeded=False,
            reason="MigrationFailed",
            message="syntax error",
            log_tail="ERROR: syntax error at line 3",
        )
        decision = chain.plan(
            observed(jobs=(job("Failed"),), outcome=outcome, status={"specHash": HASH})
        )
        assert decision.create_job is None
        assert decision.status["failures"] == 1
        assert decision.status["lastRun"]["logTail"] == "ERROR: syntax error at line 3"
        assert decision.status["nextRetryAt"] == "2026-11-29T12:00:30Z"
        assert decision.requeue_after == 30
        assert reasons(decision) == ["Failed", "RetryScheduled"]
        assert "syntax error at line 3" in decision.events[0].message
        assert decision.events[0].type == "Warning"
        assert condition(decision, "Reconciling")["reason"] == "RetryScheduled"  # type: ignore[index]

    def test_retry_creates_the_next_attempt_when_backoff_has_passed(self) -> None:
        status = {
            "specHash": HASH,
            "failures": 1,
            "nextRetryAt": "2026-11-29T11:59:00Z",
            "lastRun": {"job": "shop-a1b2c3d4", "result": "Failed", "reason": "MigrationFailed"},
        }
        decision = chain.plan(observed(status=status, jobs=(job("Failed"),)))
        assert decision.create_job is not None and decision.create_job.attempt == 1
        assert decision.status["activeJob"]["name"] == "shop-a1b2c3d4-r1"
        assert "nextRetryAt" not in decision.status

    def test_no_retry_before_its_time(self) -> None:
        status = {
            "specHash": HASH,
            "failures": 1,
            "nextRetryAt": "2026-11-29T12:00:10Z",
            "lastRun": {"job": "shop-a1b2c3d4", "result": "Failed"},
        }
        decision = chain.plan(observed(status=status, jobs=(job("Failed"),)))
        assert decision.create_job is None
        assert decision.requeue_after == 10

    def test_retries_exhausted_stalls_with_a_warning(self) -> None:
        status = {
            "specHash": HASH,
            "failures": 2,
            "lastRun": {"job": "shop-a1b2c3d4-r1", "result": "Failed"},
        }
        outcome = Outcome(
            job="shop-a1b2c3d4-r2", succeeded=False, reason="MigrationFailed", message="boom"
        )
        decision = chain.plan(
            observed(status=status, jobs=(job("Failed", attempt=2),), outcome=outcome)
        )
        assert decision.create_job is None
        assert decision.status["failures"] == 3
        stalled = condition(decision, "Stalled")
        assert stalled is not None and stalled["reason"] == "RetriesExhausted"
        assert condition(decision, "Reconciling") is None
        assert "Stalled" in reasons(decision)
        assert "lockstep.dev/retry" in stalled["message"]

    def test_permanent_failure_stalls_at_once(self) -> None:
        outcome = Outcome(
            job="shop-a1b2c3d4", succeeded=False, reason="ChecksumMismatch", message="V1 changed"
        )
        decision = chain.plan(
            observed(jobs=(job("Failed"),), outcome=outcome, status={"specHash": HASH})
        )
        stalled = condition(decision, "Stalled")
        assert stalled is not None and stalled["reason"] == "ChecksumMismatch"
        assert "nextRetryAt" not in decision.status
        assert "RetryScheduled" not in reasons(decision)

    def test_retry_annotation_rearms_a_stalled_migration(self) -> None:
        status = {
            "specHash": HASH,
            "failures": 3,
            "lastRun": {"job": "shop-a1b2c3d4-r2", "result": "Failed"},
        }
        jobs = (job("Failed"), job("Failed", attempt=1), job("Failed", attempt=2))
        decision = chain.plan(observed(status=status, retry_token="2026-11-29", jobs=jobs))
        assert decision.create_job is not None and decision.create_job.attempt == 3
        assert decision.status["failures"] == 0
        assert decision.status["activeJob"]["name"] == "shop-a1b2c3d4-r3"
        assert decision.status["retryToken"] == "2026-11-29"
        assert "RetryRequested" in reasons(decision)

    def test_same_retry_token_does_not_rearm_again(self) -> None:
        status = {
            "specHash": HASH,
            "failures": 3,
            "retryToken": "x",
            "lastRun": {"job": "j", "result": "Failed"},
        }
        decision = chain.plan(observed(status=status, retry_token="x"))
        assert decision.create_job is None
        assert condition(decision, "Stalled") is not None

    def test_spec_change_rearms_a_stalled_migration(self) -> None:
        status = {"specHash": OLD_HASH, "failures": 3, "lastRun": {"job": "j", "result": "Failed"}}
        decision = chain.plan(observed(status=status))
        assert decision.create_job is not None and decision.create_job.attempt == 0
        assert decision.status["failures"] == 0


class TestOtherStates:
    def test_suspend_pauses_without_losing_state(self) -> None:
        status = {"specHash": HASH, "appliedRevision": "1"}
        decision = chain.plan(observed(spec={"suspend": True}, status=status))
        assert decision.create_job is None
        assert decision.status["appliedRevision"] == "1"
        assert condition(decision, "Ready")["reason"] == "Suspended"  # type: ignore[index]
        assert condition(decision, "Stalled") is None
        assert condition(decision, "Reconciling") is None

    def test_suspend_lets_a_running_job_finish(self) -> None:
        decision = chain.plan(observed(spec={"suspend": True}, jobs=(job("Active"),)))
        assert condition(decision, "Ready")["reason"] == "JobRunning"  # type: ignore[index]

    def test_config_error_stalls_and_rechecks(self) -> None:
        error = ConfigError("SecretNotFound", "Secret shop/shop-db not found")
        decision = chain.plan(observed(config_error=error))
        assert decision.create_job is None
        assert condition(decision, "Stalled")["reason"] == "SecretNotFound"  # type: ignore[index]
        assert decision.requeue_after == chain.CONFIG_ERROR_RECHECK_SECONDS
        assert reasons(decision) == ["Stalled"]

    def test_stalled_warning_is_not_repeated_on_every_pass(self) -> None:
        error = ConfigError("SecretNotFound", "missing")
        first = chain.plan(observed(config_error=error))
        second = chain.plan(observed(config_error=error, status=first.status))
        assert second.events == ()
        assert second.status["conditions"] == first.status["conditions"]


APPLIED_AT_3 = {"specHash": OLD_HASH, "appliedRevision": "3", "appliedImage": "shop:1.5"}


class TestDowngrade:
    def test_lower_target_is_forbidden_by_default_and_creates_no_job(self) -> None:
        decision = chain.plan(observed(spec={"target": "2"}, status=APPLIED_AT_3))
        assert decision.create_job is None
        stalled = condition(decision, "Stalled")
        assert stalled is not None and stalled["reason"] == "DowngradeForbidden"
        assert "spec.downgrade: Allow" in stalled["message"]

    def test_allowed_downgrade_runs_with_the_image_that_applied_the_newer_revision(self) -> None:
        spec = {"tool": "knex", "image": "shop:1.4", "source": None, "target": "2"}
        decision = chain.plan(observed(spec={**spec, "downgrade": "Allow"}, status=APPLIED_AT_3))
        assert decision.create_job is not None
        assert decision.create_job.downgrade is True
        assert decision.create_job.image == "shop:1.5"

    def test_a_tool_that_cannot_downgrade_stalls_before_any_job(self) -> None:
        spec = {
            "tool": "flyway",
            "image": "f:2",
            "source": None,
            "target": "2",
            "downgrade": "Allow",
        }
        decision = chain.plan(observed(spec=spec, status=APPLIED_AT_3))
        assert decision.create_job is None
        assert condition(decision, "Stalled")["reason"] == "DowngradeUnsupported"  # type: ignore[index]

    def test_an_unsupported_target_stalls_before_any_job(self) -> None:
        spec = {"tool": "prisma", "image": "p:2", "source": None, "target": "20240101_x"}
        decision = chain.plan(observed(spec=spec))
        assert decision.create_job is None
        assert condition(decision, "Stalled")["reason"] == "TargetUnsupported"  # type: ignore[index]

    @pytest.mark.parametrize(
        ("tool", "applied", "target", "expected"),
        [
            ("sql", "3", "2", True),
            ("sql", "3", "10", False),
            ("sql", "1.10", "1.9", True),
            ("sql", "3", "base", True),
            ("sql", "3", "head", False),
            ("knex", "20240102_orders.js", "20240101_customers.js", True),
            ("django", "shop:0002_orders", "shop:0001_initial", True),
            ("django", "shop:0002_orders", "shop:0003_more", False),
        ],
    )
    def test_order_of_revisions(self, tool: str, applied: str, target: str, expected: bool) -> None:
        spec = parse_spec({**SPEC, "tool": tool, "image": "x", "source": None, "target": target})
        assert runs.is_downgrade(spec, {"appliedRevision": applied}) is expected

    def test_alembic_hashes_are_ordered_by_history(self) -> None:
        history = [
            {"from": "b2", "to": "c3", "result": "Succeeded"},
            {"from": None, "to": "b2", "result": "Succeeded"},
        ]
        status = {"appliedRevision": "c3", "history": history}
        spec = parse_spec({**SPEC, "tool": "alembic", "target": "b2"})
        assert runs.is_downgrade(spec, status) is True
        assert (
            runs.is_downgrade(parse_spec({**SPEC, "tool": "alembic", "target": "zz"}), status)
            is False
        )


class TestLockWait:
    def test_waiting_for_the_lock_is_visible(self) -> None:
        wait = facts.LockWait(
            job="shop-a1b2c3d4", since=NOW - timedelta(seconds=30), timed_out=False
        )
        decision = chain.plan(
            observed(jobs=(job("Active"),), lock_wait=wait, status={"specHash": HASH})
        )
        reconciling = condition(decision, "Reconciling")
        assert reconciling is not None and reconciling["reason"] == "WaitingForLock"
        assert "2026-11-29T11:59:30Z" in reconciling["message"]
        assert decision.delete_jobs == ()

    def test_a_lock_timeout_ends_the_job_and_schedules_a_retry(self) -> None:
        wait = facts.LockWait(job="shop-a1b2c3d4", since=None, timed_out=True)
        decision = chain.plan(
            observed(jobs=(job("Active"),), lock_wait=wait, status={"specHash": HASH})
        )
        assert decision.delete_jobs == ("shop-a1b2c3d4",)
        assert decision.create_job is None
        assert decision.status["failures"] == 1
        assert decision.status["lastRun"]["reason"] == "LockTimeout"
        assert "nextRetryAt" in decision.status
        assert reasons(decision) == ["Failed", "RetryScheduled"]


ALEMBIC_BACK = {"tool": "alembic", "image": "shop:0", "source": None, "target": "0001"}
ALEMBIC_AT_HEAD = {"specHash": HASH, "appliedRevision": "0002", "appliedImage": "shop:1"}


class TestTargetReached:
    def test_an_upgrade_that_misses_an_unordered_target_means_roll_back_next(self) -> None:
        outcome = Outcome(job="shop-a1b2c3d4", succeeded=True, applied_revision="0002")
        spec = {**ALEMBIC_BACK, "downgrade": "Allow"}
        decision = chain.plan(
            observed(spec=spec, status=ALEMBIC_AT_HEAD, jobs=(job("Succeeded"),), outcome=outcome)
        )
        assert decision.status["lastRun"]["reason"] == "TargetBehind"
        assert decision.status["appliedRevision"] == "0002"
        assert decision.create_job is not None and decision.create_job.downgrade is True
        assert decision.create_job.image == "shop:1"  # the image that has the down scripts
        assert condition(decision, "Ready")["status"] == "False"  # type: ignore[index]

    def test_without_allow_the_rollback_is_forbidden(self) -> None:
        outcome = Outcome(job="shop-a1b2c3d4", succeeded=True, applied_revision="0002")
        decision = chain.plan(
            observed(
                spec=ALEMBIC_BACK, status=ALEMBIC_AT_HEAD, jobs=(job("Succeeded"),), outcome=outcome
            )
        )
        assert decision.create_job is None
        assert condition(decision, "Stalled")["reason"] == "DowngradeForbidden"  # type: ignore[index]

    def test_a_rollback_that_misses_its_target_stalls(self) -> None:
        outcome = Outcome(job="shop-a1b2c3d4", succeeded=True, applied_revision="0002")
        done = JobView("shop-a1b2c3d4", HASH[:8], 0, "Succeeded", downgrade=True)
        decision = chain.plan(
            observed(
                spec={**ALEMBIC_BACK, "downgrade": "Allow"},
                status=ALEMBIC_AT_HEAD,
                jobs=(done,),
                outcome=outcome,
            )
        )
        stalled = condition(decision, "Stalled")
        assert stalled is not None and stalled["reason"] == "TargetNotReached"
        assert decision.create_job is None

    def test_equal_versions_in_another_spelling_count_as_reached(self) -> None:
        outcome = Outcome(job="shop-a1b2c3d4", succeeded=True, applied_revision="1")
        decision = chain.plan(
            observed(
                spec={"target": "001"},
                jobs=(job("Succeeded"),),
                outcome=outcome,
                status={"specHash": HASH},
            )
        )
        assert condition(decision, "Ready")["status"] == "True"  # type: ignore[index]


class TestDrift:
    def test_a_hand_made_change_sets_drifted_with_both_revisions(self) -> None:
        decision = chain.plan(
            observed(status=succeeded_status(), database_revision=facts.DriftReading("3"))
        )
        drifted = condition(decision, "Drifted")
        assert drifted is not None and drifted["status"] == "True"
        assert "at revision 3" in drifted["message"] and "applied 2" in drifted["message"]
        assert condition(decision, "Ready")["status"] == "True"  # type: ignore[index]
        assert reasons(decision) == ["DriftDetected"]
        assert decision.create_job is None  # a drift check never applies anything

    def test_drift_is_cleared_when_the_database_is_back(self) -> None:
        drifted = chain.plan(
            observed(status=succeeded_status(), database_revision=facts.DriftReading("3"))
        )
        back = chain.plan(
            observed(status=drifted.status, database_revision=facts.DriftReading("2"))
        )
        assert condition(back, "Drifted") is None
        assert reasons(back) == ["DriftResolved"]

    def test_no_reading_leaves_the_condition_alone(self) -> None:
        drifted = chain.plan(
            observed(status=succeeded_status(), database_revision=facts.DriftReading(None))
        )
        again = chain.plan(observed(status=drifted.status))
        assert condition(again, "Drifted") is not None
        assert again.events == ()
