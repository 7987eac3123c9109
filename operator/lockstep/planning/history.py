"""Recording what a finished Job did: lastRun, history, failures and retries, the plan it made.

Runs before the chain decides the next step, so that step sees the outcome in status.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import timedelta
from typing import Any

from lockstep import constants, timestamps, tools
from lockstep.constants import Reason
from lockstep.jobs import naming
from lockstep.model import Spec
from lockstep.planning import approval, wording
from lockstep.planning.draft import Draft
from lockstep.planning.facts import JobView, LockWait, Observed, Outcome
from lockstep.status import MigrationStatus, Plan, Run


def fail_lock_timeout(draft: Draft, spec: Spec, wait: LockWait) -> Observed:
    """The sidecar gave up on the lock: end that Job now and count it as a failed attempt.

    A native sidecar that exits is restarted by the kubelet, so without this the pod would wait
    until activeDeadlineSeconds; deleting the Job keeps timeouts.lockWaitSeconds meaningful.
    """
    observed = draft.observed
    outcome = Outcome(
        job=wait.job,
        succeeded=False,
        reason="LockTimeout",
        message=(
            f"waited more than timeouts.lockWaitSeconds ({spec.timeouts.lock_wait_seconds}s) for "
            "the database's migration lock: another migration holds it"
        ),
    )
    jobs_now = tuple(
        replace(j, state="Failed", finished_at=observed.now) if j.name == wait.job else j
        for j in observed.jobs
    )
    updated = replace(observed, jobs=jobs_now, outcome=outcome)
    draft.observed = updated
    record_outcome(draft, spec, outcome)
    draft.delete_jobs.append(wait.job)
    return updated


def record_outcome(draft: Draft, spec: Spec, outcome: Outcome) -> None:
    """A finished run into lastRun and history; success, failure (and retry) or a plan."""
    observed, status = draft.observed, draft.status
    job = next((j for j in observed.jobs if j.name == outcome.job), None)
    if job is not None and job.phase == constants.PHASE_PLAN and outcome.succeeded:
        _record_plan(draft, spec, outcome)
        return
    outcome = _check_target_reached(spec, outcome, job)
    run = _run_record(spec, observed, outcome, job)
    status["lastRun"] = run
    status["history"] = [run, *status.get("history", [])][: constants.HISTORY_LIMIT]
    if outcome.plan:
        _store_plan(draft, outcome)
    if outcome.reason == Reason.PLAN_CHANGED:
        # The database moved since the plan was made. The runner's fresh plan (stored above)
        # needs its own approval; without one, plan again.
        if not outcome.plan and isinstance(status.get("plan"), Mapping):
            status["plan"] = {**status["plan"], "stale": True}
        draft.note("Warning", Reason.PLAN_CHANGED, outcome.message)
    if outcome.reason == Reason.TARGET_BEHIND:
        # The upgrade changed nothing: the target lies behind the database. Roll back next.
        draft.note("Normal", Reason.TARGET_BEHIND, outcome.message)
    elif outcome.succeeded:
        _record_success(draft, spec, outcome, run)
    elif job is not None and job.spec_hash == observed.spec_hash[: len(job.spec_hash)]:
        _record_failure(draft, spec, outcome)
    else:
        draft.note("Warning", Reason.FAILED, f"job {outcome.job} of an earlier spec failed")


def _check_target_reached(spec: Spec, outcome: Outcome, job: JobView | None) -> Outcome:
    """A Job that exits 0 without bringing the database to a named target did not succeed.

    Tools without an order of their own (Alembic's hashes) cannot tell Lockstep beforehand
    whether a target is ahead or behind; `alembic upgrade <older>` is a no-op. So an upgrade that
    ends elsewhere means "behind" (a rollback follows, if allowed); a rollback that ends
    elsewhere is an error a person must look at.
    """
    target, applied = spec.target.strip(), outcome.applied_revision
    named = target.lower() not in ("head", *tools.base.BASE_TARGETS)
    if not outcome.succeeded or applied is None or not named:
        return outcome
    if any(_same_revision(spec, target, head) for head in applied.split(",")):
        return outcome
    if job is not None and not job.downgrade:
        message = (
            f"upgrading to {target} left the database at {applied}: {target} is behind it, "
            "so reaching it means rolling back"
        )
        return replace(outcome, succeeded=False, reason=Reason.TARGET_BEHIND, message=message)
    message = f"the Job succeeded but the database is at {applied}, not at spec.target {target}"
    return replace(outcome, succeeded=False, reason=Reason.TARGET_NOT_REACHED, message=message)


def _same_revision(spec: Spec, first: str, second: str) -> bool:
    """Equal, or equal in the tool's own order (a target "001" is version 1)."""
    if first == second:
        return True
    order = tools.get_adapter(spec.tool).order_key
    return order(first) is not None and order(first) == order(second)


def _record_success(draft: Draft, spec: Spec, outcome: Outcome, run: Run) -> None:
    status = draft.status
    revision = outcome.applied_revision or outcome.to_revision
    if revision is not None:
        status["appliedRevision"] = revision
    if spec.image:
        status["appliedImage"] = spec.image
    status["pendingCount"] = 0  # the database is at the target: nothing left to apply
    reset_failures(status)
    draft.note("Normal", Reason.SUCCEEDED, wording.success_message(run, revision))


def _record_failure(draft: Draft, spec: Spec, outcome: Outcome) -> None:
    status, now = draft.status, draft.observed.now
    failures = int(status.get("failures", 0)) + 1
    status["failures"] = failures
    detail = f"job {outcome.job} failed ({outcome.reason or Reason.FAILED})"
    if outcome.message:
        detail += f": {outcome.message}"
    draft.note("Warning", Reason.FAILED, wording.with_log_tail(detail, outcome.log_tail))
    if outcome.reason in constants.PERMANENT_FAILURE_REASONS:
        status.pop("nextRetryAt", None)
        return
    if failures > spec.retry.limit:
        status.pop("nextRetryAt", None)
        return
    delay = backoff_seconds(spec, failures)
    status["nextRetryAt"] = timestamps.isoformat(now + timedelta(seconds=delay))
    draft.note(
        "Normal",
        Reason.RETRY_SCHEDULED,
        f"retry {failures} of {spec.retry.limit} in {delay}s",
    )


def backoff_seconds(spec: Spec, failures: int) -> int:
    """Exponential backoff: backoffSeconds doubling per failure, capped at maxBackoffSeconds."""
    delay = spec.retry.backoff_seconds * (2 ** max(failures - 1, 0))
    return int(min(delay, spec.retry.max_backoff_seconds))


def _run_record(spec: Spec, observed: Observed, outcome: Outcome, job: JobView | None) -> Run:
    started = job.started_at if job else None
    finished = (job.finished_at if job else None) or observed.now
    run: Run = {
        "job": outcome.job,
        "direction": _direction(job),
        "result": "Succeeded" if outcome.succeeded else "Failed",
        "reason": outcome.reason or (Reason.SUCCEEDED if outcome.succeeded else Reason.FAILED),
        "message": outcome.message[:1024],
        "specHash": job.spec_hash if job else observed.spec_hash[:8],
        "finishedAt": timestamps.isoformat(finished),
    }
    if spec.image:
        run["image"] = spec.image
    if started is not None:
        run["startedAt"] = timestamps.isoformat(started)
        run["durationSeconds"] = round((finished - started).total_seconds(), 3)
    if outcome.from_revision is not None:
        run["from"] = outcome.from_revision
    reached = outcome.applied_revision or outcome.to_revision
    if reached is not None:
        run["to"] = reached
    if outcome.log_tail:
        run["logTail"] = outcome.log_tail[-constants.LOG_TAIL_BYTES :]
    return run


def _direction(job: JobView | None) -> str:
    if job is not None and job.phase == constants.PHASE_PLAN:
        return "Plan"
    return "Downgrade" if job is not None and job.downgrade else "Upgrade"


def succeeded_for(status: Mapping[str, Any], spec_hash: str) -> bool:
    last = status.get("lastRun") or {}
    return last.get("result") == "Succeeded" and spec_hash.startswith(str(last.get("specHash")))


def permanent_failure(status: Mapping[str, Any]) -> bool:
    last = status.get("lastRun") or {}
    return (
        last.get("result") == "Failed" and last.get("reason") in constants.PERMANENT_FAILURE_REASONS
    )


def _record_plan(draft: Draft, spec: Spec, outcome: Outcome) -> None:
    """A plan Job finished: keep its plan; the next step decides whether to ask for approval."""
    observed, status = draft.observed, draft.status
    if not outcome.plan:
        message = "the plan job succeeded but left no plan in its termination message"
        failed = replace(outcome, succeeded=False, reason=Reason.FAILED, message=message)
        job = next((j for j in observed.jobs if j.name == outcome.job), None)
        run = _run_record(spec, observed, failed, job)
        status["lastRun"] = run
        status["history"] = [run, *status.get("history", [])][: constants.HISTORY_LIMIT]
        _record_failure(draft, spec, failed)
        return
    plan = _store_plan(draft, outcome)
    if plan.get("available") and plan.get("direction") in ("Upgrade", "Downgrade"):
        migrations = len(plan.get("migrations") or []) + int(plan.get("migrationsOmitted") or 0)
        draft.status["pendingCount"] = migrations
    destructive = plan.get("classification") != approval.ADDITIVE
    draft.note(
        "Warning" if destructive else "Normal", Reason.PLANNED, approval.planned_message(plan)
    )


def _store_plan(draft: Draft, outcome: Outcome) -> Plan:
    assert outcome.plan is not None
    salt = naming.plan_salt(draft.observed.spec_hash)
    plan = approval.stored_plan(outcome.plan, salt, outcome.job)
    draft.status["plan"] = plan
    return plan


def reset_failures(status: MigrationStatus) -> None:
    status["failures"] = 0
    status.pop("nextRetryAt", None)
