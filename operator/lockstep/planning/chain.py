"""The reconcile decision, as one pure function: observed world in, one Decision out.

`plan()` never talks to Kubernetes or a database. Everything it needs (the spec, the last status,
the Jobs that exist, what a finished Job reported, the clock) is gathered first into `Observed`;
the Decision says which status to write, which Job to create, which Events to record and when to
look again. `_next_step` is the chain of named steps, read top to bottom; the first that applies
decides. Table-driven unit tests cover it without a cluster.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any, cast

from lockstep import conditions, constants, timestamps
from lockstep.constants import Reason
from lockstep.jobs import containers, naming, plan_pod, rehearsal
from lockstep.jobs.naming import JobRequest, job_name
from lockstep.model import Spec
from lockstep.planning import approval, drift, history, runs, wording
from lockstep.planning.draft import Draft, finish
from lockstep.planning.facts import ConfigError, Decision, JobView, Observed, Rollout
from lockstep.status import MigrationStatus, Plan

# How soon to look again while waiting on something no watch reports.
CONFIG_ERROR_RECHECK_SECONDS = 60.0
MISSING_INPUT_FIRST_RECHECK_SECONDS = 3.0
BLOCKED_RECHECK_SECONDS = 15.0
ROLLOUT_RECHECK_SECONDS = 5.0
# WaitingForLock shows once the lock sidecar has waited this long. Even with the lock free, its
# startup probe (a `lockstep lock --probe` process every LOCK_PROBE_PERIOD_SECONDS) passes 1-2 s
# after the sidecar starts on a quiet node and 3-5 s on a loaded one (bench/, load 10: with 3 s
# here, every run still flipped to WaitingForLock and back). Waits that matter last longer.
LOCK_WAIT_SHOWN_AFTER_SECONDS = 10.0 * containers.LOCK_PROBE_PERIOD_SECONDS


def plan(observed: Observed) -> Decision:
    """Record what finished since the last pass, then take the first step that applies."""
    draft = Draft(observed, _carry_over(observed.status))
    draft.status["observedGeneration"] = observed.generation
    if observed.config_error is not None or observed.spec is None:
        error = observed.config_error or ConfigError(Reason.INVALID_SPEC, "spec could not be read")
        return _config_error(draft, error, observed.spec)
    spec = observed.spec
    draft.status["targetRevision"] = spec.target
    _rearm_on_new_spec_or_retry_request(draft)
    if observed.lock_wait is not None and observed.lock_wait.timed_out:
        observed = history.fail_lock_timeout(draft, spec, observed.lock_wait)
        draft.observed = observed
    elif observed.outcome is not None:
        history.record_outcome(draft, spec, observed.outcome)
    return _next_step(draft, spec)


def _next_step(draft: Draft, spec: Spec) -> Decision:
    observed, status = draft.observed, draft.status
    active = [j for j in observed.jobs if j.state == "Active"]
    if active:
        return _job_running(draft, active[0])
    status.pop("activeJob", None)
    if history.succeeded_for(status, observed.spec_hash):
        if observed.database_revision is not None:
            drift.check_drift(draft, observed.database_revision)
        return finish(draft, _ready_state(status))
    if status.get("failures", 0) > 0 and history.permanent_failure(status):
        return _stalled(draft, str(status["lastRun"]["reason"]), wording.last_message(status))
    if status.get("failures", 0) > spec.retry.limit:
        return _stalled(draft, Reason.RETRIES_EXHAUSTED, wording.exhausted_message(status, spec))
    if spec.suspend:
        return _suspended(draft)
    retry_at = timestamps.parse(status.get("nextRetryAt"))
    if retry_at is not None and observed.now < retry_at:
        return _waiting_to_retry(draft, retry_at)
    if spec.when == "AfterRollout":
        pending = [r for r in observed.rollouts or () if not r.done]
        if observed.rollouts is None or pending:
            return _waiting_for_rollout(draft, pending)
    request = runs.job_request(observed, status, spec)
    if request.downgrade and not spec.downgrade_allowed:
        return _stalled(draft, Reason.DOWNGRADE_FORBIDDEN, wording.forbidden_message(spec, status))
    problem = containers.command_problem(spec, request)
    if problem is not None:
        return _stalled(draft, problem.reason, str(problem))
    unrehearsable = rehearsal.rehearsal_problem(spec, request)
    if unrehearsable is not None:
        message = (
            f"spec.verify.shadowDatabase: {unrehearsable}; remove spec.verify to run unrehearsed"
        )
        return _stalled(draft, Reason.REHEARSAL_UNSUPPORTED, message)
    approved = _plan_and_approval(draft, spec, request)
    if isinstance(approved, Decision):
        return approved
    if observed.blocking_jobs:
        return _blocked(draft, observed.blocking_jobs)
    return _create_job(draft, spec, approved)


def _carry_over(status: MigrationStatus) -> MigrationStatus:
    """The fields one pass keeps from the last status; the rest are written fresh."""
    kept = (
        "specHash",
        "appliedRevision",
        "appliedImage",
        "targetRevision",
        "failures",
        "nextRetryAt",
        "retryToken",
        "activeJob",
        "lastRun",
        "history",
        "conditions",
        "pendingCount",
        "plan",
        "gatedPods",
    )
    found: Mapping[str, Any] = status  # the fields are named at run time, not as literals
    return cast(MigrationStatus, {k: found[k] for k in kept if k in found})


def _rearm_on_new_spec_or_retry_request(draft: Draft) -> None:
    observed, status = draft.observed, draft.status
    if status.get("specHash") != observed.spec_hash:
        status["specHash"] = observed.spec_hash
        history.reset_failures(status)
    token = observed.retry_token
    if token and token != status.get("retryToken"):
        status["retryToken"] = token
        if status.get("failures", 0):
            history.reset_failures(status)
            draft.note("Normal", Reason.RETRY_REQUESTED, f"retry requested ({token}): trying again")


def _job_running(draft: Draft, job: JobView) -> Decision:
    status, observed = draft.status, draft.observed
    carried = status.get("activeJob") or {}
    status["activeJob"] = {"name": job.name, "attempt": job.attempt}
    # The creation time written with the Job is kept: its startTime, 20 ms later, is not worth
    # a status write of its own. A Job adopted without one (another instance made it) gets it.
    if carried.get("name") == job.name and carried.get("startedAt"):
        status["activeJob"]["startedAt"] = carried["startedAt"]
    elif job.started_at is not None:
        status["activeJob"]["startedAt"] = timestamps.isoformat(job.started_at)
    wait = observed.lock_wait
    look_again = None
    if wait is not None and wait.job == job.name and not wait.timed_out:
        # Even with the lock free the sidecar "waits" until its startup probe passes: a wait
        # shorter than LOCK_WAIT_SHOWN_AFTER_SECONDS is reported as what runs, and looked at
        # again when it would count.
        waited = (observed.now - wait.since).total_seconds() if wait.since else None
        if waited is not None and waited < LOCK_WAIT_SHOWN_AFTER_SECONDS:
            look_again = LOCK_WAIT_SHOWN_AFTER_SECONDS - max(waited, 0.0)
        else:
            since = f" since {timestamps.isoformat(wait.since)}" if wait.since else ""
            message = f"job {job.name} is waiting for the database's migration lock{since}"
            state = conditions.State(False, Reason.WAITING_FOR_LOCK, message, reconciling=True)
            return finish(draft, state)
    if observed.spec_hash.startswith(job.spec_hash) and job.phase == constants.PHASE_PLAN:
        message = f"job {job.name} is rendering and classifying the SQL of the migration"
        state = conditions.State(False, Reason.PLANNING, message, reconciling=True)
    elif observed.spec_hash.startswith(job.spec_hash):
        message = f"job {job.name} is migrating to {wording.target(observed)}"
        state = conditions.State(False, Reason.JOB_RUNNING, message, reconciling=True)
    else:
        # Never start a run while another one of ours is still going: let it finish first.
        message = f"waiting for job {job.name} of the previous spec to finish"
        state = conditions.State(False, Reason.WAITING_FOR_PREVIOUS_JOB, message, reconciling=True)
    return finish(draft, state, requeue=look_again)


def _create_job(draft: Draft, spec: Spec, request: JobRequest) -> Decision:
    observed, status = draft.observed, draft.status
    name = job_name(observed.name, observed.spec_hash, request.attempt)
    status.pop("nextRetryAt", None)
    # The CRD's activeJob.startedAt is "when the Job was created": now, in the same write.
    status["activeJob"] = {
        "name": name,
        "attempt": request.attempt,
        "startedAt": timestamps.isoformat(observed.now),
    }
    verb = "roll back" if request.downgrade else "migrate"
    approved = f" (plan {request.expect_plan})" if request.expect_plan else ""
    draft.note(
        "Normal", Reason.JOB_CREATED, f"created job {name} to {verb} to {spec.target}{approved}"
    )
    message = f"job {name} is migrating to {spec.target}"
    # Same reason as while it runs: adopting the new Job then needs no extra status write.
    state = conditions.State(False, Reason.JOB_RUNNING, message, reconciling=True)
    return finish(draft, state, create=request)


def _waiting_for_rollout(draft: Draft, pending: list[Rollout]) -> Decision:
    """The contract phase runs only after the new version serves everywhere."""
    details = "; ".join(r.message for r in pending) or "rollout state not read yet"
    message = f"when: AfterRollout: waiting until every workload has rolled out ({details})"
    state = conditions.State(False, Reason.WAITING_FOR_ROLLOUT, message, reconciling=True)
    return finish(draft, state, requeue=ROLLOUT_RECHECK_SECONDS)


def _waiting_to_retry(draft: Draft, retry_at: datetime) -> Decision:
    observed = draft.observed
    failures = draft.status.get("failures", 0)
    message = f"attempt {failures} failed; retrying at {timestamps.isoformat(retry_at)}: " + (
        wording.last_message(draft.status)
    )
    state = conditions.State(False, Reason.RETRY_SCHEDULED, message, reconciling=True)
    return finish(draft, state, requeue=(retry_at - observed.now).total_seconds())


def _blocked(draft: Draft, blocking: tuple[str, ...]) -> Decision:
    message = f"another migration of the same database is running: job {', '.join(blocking)}"
    state = conditions.State(False, Reason.WAITING_FOR_JOB, message, reconciling=True)
    return finish(draft, state, requeue=BLOCKED_RECHECK_SECONDS)


def _suspended(draft: Draft) -> Decision:
    message = "spec.suspend is true: no migration runs until it is false"
    return finish(draft, conditions.State(False, Reason.SUSPENDED, message))


def _stalled(draft: Draft, reason: str, message: str) -> Decision:
    return finish(draft, conditions.State(False, reason, message, stalled=True))


def _config_error(draft: Draft, error: ConfigError, spec: Spec | None) -> Decision:
    """Stalled, unless the input may yet appear by itself and its grace has not run out.

    GitOps tools apply a Secret or ConfigMap in the same sync as the DatabaseMigration, or an
    operator (ExternalSecrets, sealed secrets) creates it moments later: until
    spec.timeouts.missingInputSeconds have passed since it was first found missing, the resource
    is Reconciling (Argo CD: Progressing; Flux keeps waiting), not Stalled (Degraded, failed).
    """
    if error.may_appear and spec is not None:
        now = draft.observed.now
        since = timestamps.parse(draft.observed.status.get("inputMissingSince")) or now
        draft.status["inputMissingSince"] = timestamps.isoformat(since)
        waited = (now - since).total_seconds()
        left = spec.timeouts.missing_input_seconds - waited
        if left > 0:
            message = (
                f"{error.message}. Waiting for it to appear (a GitOps sync or a secrets operator "
                f"may create it): {left:.0f}s left before this counts as stalled "
                f"(spec.timeouts.missingInputSeconds)"
            )
            state = conditions.State(False, error.reason, message, reconciling=True)
            return finish(draft, state, requeue=_missing_input_recheck(waited, left))
    state = conditions.State(False, error.reason, error.message, stalled=True)
    return finish(draft, state, requeue=CONFIG_ERROR_RECHECK_SECONDS)


def _missing_input_recheck(waited: float, left: float) -> float:
    """Often at first (most inputs arrive within seconds), then less; the grace's end on time."""
    every = MISSING_INPUT_FIRST_RECHECK_SECONDS if waited < 60 else CONFIG_ERROR_RECHECK_SECONDS / 4
    return max(1.0, min(every, left))


def _ready_state(status: Mapping[str, Any]) -> conditions.State:
    revision = status.get("appliedRevision")
    message = f"database is at revision {revision}" if revision else "database is migrated"
    return conditions.State(True, Reason.SUCCEEDED, message)


def _plan_and_approval(draft: Draft, spec: Spec, request: JobRequest) -> Decision | JobRequest:
    """Plan the run when a person may have to approve it; wait for that approval if needed.

    Returns the request to run (carrying the plan it must match), or the Decision to wait.
    """
    observed, status = draft.observed, draft.status
    salt = naming.plan_salt(observed.spec_hash)
    plan = approval.current_plan(status, salt)
    if plan is not None and not approval.describes(plan, request.downgrade):
        # The plan was of the other direction (an Alembic target found behind the database
        # only by running): the rollback needs a plan, and an approval, of its own.
        status["plan"] = {**plan, "stale": True}
        plan = None
    renderable = plan_pod.can_render_plan(spec)
    if plan is None:
        if not approval.plan_for_spec(status, salt):
            status.pop("plan", None)
        if not renderable:
            plan = approval.unavailable_plan(spec, salt)
            status["plan"] = plan
    if renderable:
        request = replace(request, plan_salt=salt)
    if spec.approval == "None":
        return request
    if plan is None:
        return _create_plan_job(draft, spec, request)
    expected = replace(request, expect_plan=str(plan["hash"]) if plan.get("available") else None)
    if not approval.needs_approval(spec, plan) or observed.approved_plan == plan["hash"]:
        return expected
    return _awaiting_approval(draft, spec, plan)


def _create_plan_job(draft: Draft, spec: Spec, request: JobRequest) -> Decision:
    observed, status = draft.observed, draft.status
    attempt = runs.next_attempt(observed, constants.PHASE_PLAN)
    plan_request = replace(request, attempt=attempt, phase=constants.PHASE_PLAN)
    name = job_name(observed.name, observed.spec_hash, attempt, constants.PHASE_PLAN)
    status.pop("nextRetryAt", None)
    status["activeJob"] = {"name": name, "attempt": attempt}
    draft.note(
        "Normal",
        Reason.JOB_CREATED,
        f"created job {name} to plan the migration to {spec.target} (spec.approval is "
        f"{spec.approval})",
    )
    message = f"job {name} is rendering and classifying the SQL of the migration"
    state = conditions.State(False, Reason.PLANNING, message, reconciling=True)
    return finish(draft, state, create=plan_request)


def _awaiting_approval(draft: Draft, spec: Spec, plan: Plan) -> Decision:
    """Ready=False until a person approves this very plan (kstatus InProgress, Argo Suspended)."""
    observed = draft.observed
    approved = observed.approved_plan
    message = approval.awaiting_message(observed.name, spec, plan, approved)
    before = conditions.ready(observed.status)
    if (before or {}).get("message") != message:
        if approved and approved != plan["hash"]:
            draft.note("Warning", Reason.APPROVAL_IGNORED, approval.ignored_message(plan, approved))
        draft.note("Normal", Reason.AWAITING_APPROVAL, message)
    return finish(draft, conditions.State(False, Reason.AWAITING_APPROVAL, message))
