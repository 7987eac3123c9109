"""The reconcile decision, as one pure function: observed world in, one Decision out.

`plan()` never talks to Kubernetes or a database. Everything it needs (the spec, the last status,
the Jobs that exist, what a finished Job reported, the clock) is gathered first into `Observed`;
the Decision says which status to write, which Job to create, which Events to record and when to
look again. Table-driven unit tests cover it without a cluster.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from lockstep import approval, conditions, constants, jobs, tools
from lockstep.constants import Reason
from lockstep.jobs import JobRequest, job_name
from lockstep.model import Spec

JobState = Literal["Active", "Succeeded", "Failed"]
EventType = Literal["Normal", "Warning"]

CONFIG_ERROR_RECHECK_SECONDS = 60.0
BLOCKED_RECHECK_SECONDS = 15.0


@dataclass(frozen=True)
class JobView:
    """The facts planning needs about one migration Job."""

    name: str
    spec_hash: str
    attempt: int
    state: JobState
    downgrade: bool = False
    phase: str = constants.PHASE_MIGRATE
    started_at: datetime | None = None
    finished_at: datetime | None = None
    reason: str = ""
    message: str = ""


@dataclass(frozen=True)
class Outcome:
    """What a finished Job left behind, read before the Job or its pod can disappear."""

    job: str
    succeeded: bool
    reason: str = ""
    message: str = ""
    log_tail: str = ""
    from_revision: str | None = None
    to_revision: str | None = None
    applied_revision: str | None = None
    lock_wait_seconds: float | None = None
    # The rendered, classified plan the runner reported (status.plan's shape, without specHash).
    plan: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class LockWait:
    """The running Job's lock sidecar waits for the database lock (or gave up waiting)."""

    job: str
    since: datetime | None
    timed_out: bool


@dataclass(frozen=True)
class Rollout:
    """Whether one workload of spec.rollout.workloads has fully rolled out."""

    kind: str
    name: str
    done: bool
    message: str


@dataclass(frozen=True)
class DriftReading:
    revision: str | None


@dataclass(frozen=True)
class ConfigError:
    """Input the operator cannot act on until a person fixes it (missing Secret, bad spec)."""

    reason: str
    message: str


@dataclass(frozen=True)
class Observed:
    name: str
    generation: int
    spec: Spec | None
    spec_hash: str
    status: Mapping[str, Any]
    now: datetime
    retry_token: str | None = None
    # The plan hash named by the lockstep.dev/approve annotation, if any.
    approved_plan: str | None = None
    jobs: tuple[JobView, ...] = ()
    blocking_jobs: tuple[str, ...] = ()
    outcome: Outcome | None = None
    config_error: ConfigError | None = None
    lock_wait: LockWait | None = None
    rollouts: tuple[Rollout, ...] | None = None  # gathered for when: AfterRollout only
    # What the tool's version table says now, read every driftCheck.intervalSeconds.
    database_revision: DriftReading | None = None


@dataclass(frozen=True)
class Event:
    type: EventType
    reason: str
    message: str


@dataclass(frozen=True)
class Decision:
    status: dict[str, Any]
    create_job: JobRequest | None = None
    delete_jobs: tuple[str, ...] = ()
    events: tuple[Event, ...] = ()
    requeue_after: float | None = None


@dataclass
class _Draft:
    """Mutable scratch space for one planning pass; frozen into a Decision at the end."""

    observed: Observed
    status: dict[str, Any]
    events: list[Event] = field(default_factory=list)
    delete_jobs: list[str] = field(default_factory=list)

    def note(self, kind: EventType, reason: str, message: str) -> None:
        self.events.append(Event(kind, reason, message))


def plan(observed: Observed) -> Decision:
    draft = _Draft(observed, _carry_over(observed.status))
    draft.status["observedGeneration"] = observed.generation
    if observed.config_error is not None or observed.spec is None:
        error = observed.config_error or ConfigError(Reason.INVALID_SPEC, "spec could not be read")
        return _config_error(draft, error)
    spec = observed.spec
    draft.status["targetRevision"] = spec.target
    _rearm_on_new_spec_or_retry_request(draft)
    if observed.lock_wait is not None and observed.lock_wait.timed_out:
        observed = _fail_lock_timeout(draft, spec, observed.lock_wait)
        draft.observed = observed
    elif observed.outcome is not None:
        _record_outcome(draft, spec, observed.outcome)
    return _next_step(draft, spec)


def _fail_lock_timeout(draft: _Draft, spec: Spec, wait: LockWait) -> Observed:
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
    _record_outcome(draft, spec, outcome)
    draft.delete_jobs.append(wait.job)
    return updated


def _next_step(draft: _Draft, spec: Spec) -> Decision:
    observed, status = draft.observed, draft.status
    active = [j for j in observed.jobs if j.state == "Active"]
    if active:
        return _job_running(draft, active[0])
    status.pop("activeJob", None)
    if succeeded_for(status, observed.spec_hash):
        if observed.database_revision is not None:
            _check_drift(draft, observed.database_revision)
        return _finish(draft, _ready_state(status))
    if status.get("failures", 0) > 0 and _permanent_failure(status):
        return _stalled(draft, str(status["lastRun"]["reason"]), _last_message(status))
    if status.get("failures", 0) > spec.retry.limit:
        return _stalled(draft, Reason.RETRIES_EXHAUSTED, _exhausted_message(status, spec))
    if spec.suspend:
        return _suspended(draft)
    retry_at = _parse_time(status.get("nextRetryAt"))
    if retry_at is not None and observed.now < retry_at:
        return _waiting_to_retry(draft, retry_at)
    if spec.when == "AfterRollout":
        pending = [r for r in observed.rollouts or () if not r.done]
        if observed.rollouts is None or pending:
            return _waiting_for_rollout(draft, pending)
    request = _job_request(observed, status, spec)
    if request.downgrade and not spec.downgrade_allowed:
        return _stalled(draft, Reason.DOWNGRADE_FORBIDDEN, _forbidden_message(spec, status))
    problem = jobs.command_problem(spec, request)
    if problem is not None:
        return _stalled(draft, problem.reason, str(problem))
    unrehearsable = jobs.rehearsal_problem(spec, request)
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


def _carry_over(status: Mapping[str, Any]) -> dict[str, Any]:
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
    return {k: status[k] for k in kept if k in status}


def _rearm_on_new_spec_or_retry_request(draft: _Draft) -> None:
    observed, status = draft.observed, draft.status
    if status.get("specHash") != observed.spec_hash:
        status["specHash"] = observed.spec_hash
        _reset_failures(status)
    token = observed.retry_token
    if token and token != status.get("retryToken"):
        status["retryToken"] = token
        if status.get("failures", 0):
            _reset_failures(status)
            draft.note("Normal", Reason.RETRY_REQUESTED, f"retry requested ({token}): trying again")


def _reset_failures(status: dict[str, Any]) -> None:
    status["failures"] = 0
    status.pop("nextRetryAt", None)


def _record_outcome(draft: _Draft, spec: Spec, outcome: Outcome) -> None:
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


def _record_success(draft: _Draft, spec: Spec, outcome: Outcome, run: Mapping[str, Any]) -> None:
    status = draft.status
    revision = outcome.applied_revision or outcome.to_revision
    if revision is not None:
        status["appliedRevision"] = revision
    if spec.image:
        status["appliedImage"] = spec.image
    status["pendingCount"] = 0  # the database is at the target: nothing left to apply
    _reset_failures(status)
    draft.note("Normal", Reason.SUCCEEDED, _success_message(run, revision))


def _record_failure(draft: _Draft, spec: Spec, outcome: Outcome) -> None:
    status, now = draft.status, draft.observed.now
    failures = int(status.get("failures", 0)) + 1
    status["failures"] = failures
    detail = f"job {outcome.job} failed ({outcome.reason or Reason.FAILED})"
    if outcome.message:
        detail += f": {outcome.message}"
    draft.note("Warning", Reason.FAILED, _with_log_tail(detail, outcome.log_tail))
    if outcome.reason in constants.PERMANENT_FAILURE_REASONS:
        status.pop("nextRetryAt", None)
        return
    if failures > spec.retry.limit:
        status.pop("nextRetryAt", None)
        return
    delay = backoff_seconds(spec, failures)
    status["nextRetryAt"] = conditions.isoformat(now + timedelta(seconds=delay))
    draft.note(
        "Normal",
        Reason.RETRY_SCHEDULED,
        f"retry {failures} of {spec.retry.limit} in {delay}s",
    )


def backoff_seconds(spec: Spec, failures: int) -> int:
    """Exponential backoff: backoffSeconds doubling per failure, capped at maxBackoffSeconds."""
    delay = spec.retry.backoff_seconds * (2 ** max(failures - 1, 0))
    return int(min(delay, spec.retry.max_backoff_seconds))


def _run_record(
    spec: Spec, observed: Observed, outcome: Outcome, job: JobView | None
) -> dict[str, Any]:
    started = job.started_at if job else None
    finished = (job.finished_at if job else None) or observed.now
    run: dict[str, Any] = {
        "job": outcome.job,
        "direction": _direction(job),
        "result": "Succeeded" if outcome.succeeded else "Failed",
        "reason": outcome.reason or (Reason.SUCCEEDED if outcome.succeeded else Reason.FAILED),
        "message": outcome.message[:1024],
        "specHash": job.spec_hash if job else observed.spec_hash[:8],
        "finishedAt": conditions.isoformat(finished),
    }
    if spec.image:
        run["image"] = spec.image
    if started is not None:
        run["startedAt"] = conditions.isoformat(started)
        run["durationSeconds"] = round((finished - started).total_seconds(), 3)
    if outcome.from_revision is not None:
        run["from"] = outcome.from_revision
    if outcome.to_revision is not None or outcome.applied_revision is not None:
        run["to"] = outcome.applied_revision or outcome.to_revision
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


def _permanent_failure(status: Mapping[str, Any]) -> bool:
    last = status.get("lastRun") or {}
    return (
        last.get("result") == "Failed" and last.get("reason") in constants.PERMANENT_FAILURE_REASONS
    )


def _job_running(draft: _Draft, job: JobView) -> Decision:
    status, observed = draft.status, draft.observed
    status["activeJob"] = {"name": job.name, "attempt": job.attempt}
    if job.started_at is not None:
        status["activeJob"]["startedAt"] = conditions.isoformat(job.started_at)
    wait = observed.lock_wait
    if wait is not None and wait.job == job.name and not wait.timed_out:
        since = f" since {conditions.isoformat(wait.since)}" if wait.since else ""
        message = f"job {job.name} is waiting for the database's migration lock{since}"
        state = conditions.State(False, Reason.WAITING_FOR_LOCK, message, reconciling=True)
        return _finish(draft, state)
    if observed.spec_hash.startswith(job.spec_hash) and job.phase == constants.PHASE_PLAN:
        message = f"job {job.name} is rendering and classifying the SQL of the migration"
        return _finish(draft, conditions.State(False, Reason.PLANNING, message, reconciling=True))
    if observed.spec_hash.startswith(job.spec_hash):
        message = f"job {job.name} is migrating to {_target(observed)}"
        return _finish(
            draft, conditions.State(False, Reason.JOB_RUNNING, message, reconciling=True)
        )
    # Never start a run while another one of ours is still going: let it finish first.
    message = f"waiting for job {job.name} of the previous spec to finish"
    return _finish(
        draft, conditions.State(False, Reason.WAITING_FOR_PREVIOUS_JOB, message, reconciling=True)
    )


def _job_request(observed: Observed, status: Mapping[str, Any], spec: Spec) -> JobRequest:
    plan = approval.current_plan(status, jobs.plan_salt(observed.spec_hash))
    # A plan that found the target behind the database (Alembic's unordered hashes) says so.
    downgrade = is_downgrade(spec, status) or (plan or {}).get("direction") == "Downgrade"
    return JobRequest(
        attempt=next_attempt(observed),
        target=spec.target,
        downgrade=downgrade,
        # The down migrations live in the image that applied the newer revision, not in git's.
        image=status.get("appliedImage") if downgrade else None,
        database_at=_database_at(spec, status),
    )


def _database_at(spec: Spec, status: Mapping[str, Any]) -> str:
    """The revision the real database is at, as the tool's downgrade command names it."""
    applied = status.get("appliedRevision")
    if applied:
        return str(applied)
    return tools.get_adapter(spec.tool).base_revision(spec.target)


def is_downgrade(spec: Spec, status: Mapping[str, Any]) -> bool:
    """Whether spec.target lies below the applied revision.

    Revisions that sort (versions, timestamped names) are compared by the tool's order; others
    (Alembic's hashes) by when they first appeared in this resource's history.
    """
    applied = status.get("appliedRevision")
    target = spec.target.strip()
    if not applied or target.lower() == "head" or target == applied:
        return False
    last = status.get("lastRun") or {}
    if last.get("reason") == Reason.TARGET_BEHIND and str(status.get("specHash", "")).startswith(
        str(last.get("specHash"))
    ):
        return True
    if target.lower() in tools.base.BASE_TARGETS:
        return True
    order = tools.get_adapter(spec.tool).order_key
    target_key, applied_key = order(target), order(str(applied))
    if target_key is not None and applied_key is not None:
        return target_key < applied_key
    seen = _revisions_in_order(status.get("history") or [])
    return target in seen and str(applied) in seen and seen.index(target) < seen.index(applied)


def _revisions_in_order(history: list[Mapping[str, Any]]) -> list[str]:
    """Revisions in the order this resource first reached them (history is newest first)."""
    seen: list[str] = []
    for run in reversed(history):
        for revision in (run.get("from"), run.get("to")):
            if revision and revision not in seen:
                seen.append(str(revision))
    return seen


def _forbidden_message(spec: Spec, status: Mapping[str, Any]) -> str:
    return (
        f"spec.target {spec.target} is below the applied revision {status.get('appliedRevision')}:"
        " rolling back needs spec.downgrade: Allow (or set the target back)"
    )


def _create_job(draft: _Draft, spec: Spec, request: JobRequest) -> Decision:
    observed, status = draft.observed, draft.status
    name = job_name(observed.name, observed.spec_hash, request.attempt)
    status.pop("nextRetryAt", None)
    status["activeJob"] = {"name": name, "attempt": request.attempt}
    verb = "roll back" if request.downgrade else "migrate"
    approved = f" (plan {request.expect_plan})" if request.expect_plan else ""
    draft.note(
        "Normal", Reason.JOB_CREATED, f"created job {name} to {verb} to {spec.target}{approved}"
    )
    message = f"job {name} is migrating to {spec.target}"
    # Same reason as while it runs: adopting the new Job then needs no extra status write.
    state = conditions.State(False, Reason.JOB_RUNNING, message, reconciling=True)
    return _finish(draft, state, create=request)


def next_attempt(observed: Observed, phase: str = constants.PHASE_MIGRATE) -> int:
    """One past the newest Job of this spec: a re-armed retry never reuses a finished Job's name."""
    attempts = [
        j.attempt
        for j in observed.jobs
        if observed.spec_hash.startswith(j.spec_hash) and j.phase == phase
    ]
    return max(attempts, default=-1) + 1


ROLLOUT_RECHECK_SECONDS = 5.0


def _plan_and_approval(draft: _Draft, spec: Spec, request: JobRequest) -> Decision | JobRequest:
    """Plan the run when a person may have to approve it; wait for that approval if needed.

    Returns the request to run (carrying the plan it must match), or the Decision to wait.
    """
    observed, status = draft.observed, draft.status
    salt = jobs.plan_salt(observed.spec_hash)
    plan = approval.current_plan(status, salt)
    if plan is not None and not approval.describes(plan, request.downgrade):
        # The plan was of the other direction (an Alembic target found behind the database
        # only by running): the rollback needs a plan, and an approval, of its own.
        status["plan"] = {**plan, "stale": True}
        plan = None
    renderable = jobs.can_render_plan(spec)
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


def _create_plan_job(draft: _Draft, spec: Spec, request: JobRequest) -> Decision:
    observed, status = draft.observed, draft.status
    attempt = next_attempt(observed, constants.PHASE_PLAN)
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
    return _finish(draft, state, create=plan_request)


def _awaiting_approval(draft: _Draft, spec: Spec, plan: Mapping[str, Any]) -> Decision:
    """Ready=False until a person approves this very plan (kstatus InProgress, Argo Suspended)."""
    observed = draft.observed
    approved = observed.approved_plan
    message = approval.awaiting_message(observed.name, spec, plan, approved)
    before = conditions.find(list(observed.status.get("conditions") or []), constants.READY)
    if (before or {}).get("message") != message:
        if approved and approved != plan["hash"]:
            draft.note("Warning", Reason.APPROVAL_IGNORED, approval.ignored_message(plan, approved))
        draft.note("Normal", Reason.AWAITING_APPROVAL, message)
    return _finish(draft, conditions.State(False, Reason.AWAITING_APPROVAL, message))


def _record_plan(draft: _Draft, spec: Spec, outcome: Outcome) -> None:
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


def _store_plan(draft: _Draft, outcome: Outcome) -> dict[str, Any]:
    assert outcome.plan is not None
    salt = jobs.plan_salt(draft.observed.spec_hash)
    plan = approval.stored_plan(outcome.plan, salt, outcome.job)
    draft.status["plan"] = plan
    return plan


def _waiting_for_rollout(draft: _Draft, pending: list[Rollout]) -> Decision:
    """The contract phase runs only after the new version serves everywhere."""
    details = "; ".join(r.message for r in pending) or "rollout state not read yet"
    message = f"when: AfterRollout: waiting until every workload has rolled out ({details})"
    state = conditions.State(False, Reason.WAITING_FOR_ROLLOUT, message, reconciling=True)
    return _finish(draft, state, requeue=ROLLOUT_RECHECK_SECONDS)


def _waiting_to_retry(draft: _Draft, retry_at: datetime) -> Decision:
    observed = draft.observed
    failures = draft.status.get("failures", 0)
    message = f"attempt {failures} failed; retrying at {conditions.isoformat(retry_at)}: " + (
        _last_message(draft.status)
    )
    state = conditions.State(False, Reason.RETRY_SCHEDULED, message, reconciling=True)
    return _finish(draft, state, requeue=(retry_at - observed.now).total_seconds())


def _blocked(draft: _Draft, blocking: tuple[str, ...]) -> Decision:
    message = f"another migration of the same database is running: job {', '.join(blocking)}"
    state = conditions.State(False, Reason.WAITING_FOR_JOB, message, reconciling=True)
    return _finish(draft, state, requeue=BLOCKED_RECHECK_SECONDS)


def _suspended(draft: _Draft) -> Decision:
    message = "spec.suspend is true: no migration runs until it is false"
    return _finish(draft, conditions.State(False, Reason.SUSPENDED, message))


def _stalled(draft: _Draft, reason: str, message: str) -> Decision:
    return _finish(draft, conditions.State(False, reason, message, stalled=True))


def _config_error(draft: _Draft, error: ConfigError) -> Decision:
    state = conditions.State(False, error.reason, error.message, stalled=True)
    return _finish(draft, state, requeue=CONFIG_ERROR_RECHECK_SECONDS)


def _check_drift(draft: _Draft, reading: DriftReading) -> None:
    """Compare the database with what Lockstep applied; never applies anything itself."""
    status, observed = draft.status, draft.observed
    applied = status.get("appliedRevision")
    current = list(status.get("conditions") or [])
    was_drifted = conditions.is_true(current, constants.DRIFTED)
    if reading.revision == applied:
        if was_drifted:
            draft.note("Normal", Reason.DRIFT_RESOLVED, f"the database is back at {applied}")
        status["conditions"] = conditions.remove_condition(current, constants.DRIFTED)
        return
    message = (
        f"the database is at revision {reading.revision or 'none'} but Lockstep applied "
        f"{applied or 'none'}: someone migrated or rolled back by hand"
    )
    status["conditions"] = conditions.set_condition(
        current,
        constants.DRIFTED,
        "True",
        Reason.DRIFT_DETECTED,
        message,
        observed.generation,
        observed.now,
    )
    if not was_drifted:
        draft.note("Warning", Reason.DRIFT_DETECTED, message)


def _ready_state(status: Mapping[str, Any]) -> conditions.State:
    revision = status.get("appliedRevision")
    message = f"database is at revision {revision}" if revision else "database is migrated"
    return conditions.State(True, Reason.SUCCEEDED, message)


def _finish(
    draft: _Draft,
    state: conditions.State,
    create: JobRequest | None = None,
    requeue: float | None = None,
) -> Decision:
    observed, status = draft.observed, draft.status
    previous = list(observed.status.get("conditions", []))
    # Conditions set earlier in this pass (Drifted) are kept; Ready/Reconciling/Stalled follow.
    status["conditions"] = conditions.apply_state(
        status.get("conditions", previous), state, observed.generation, observed.now
    )
    _note_transition(draft, previous, state)
    return Decision(
        status=status,
        create_job=create,
        delete_jobs=tuple(draft.delete_jobs),
        events=tuple(draft.events),
        requeue_after=requeue,
    )


def _note_transition(
    draft: _Draft, previous: list[Mapping[str, Any]], state: conditions.State
) -> None:
    """A Warning the first time the resource stalls, so nothing ever stops silently."""
    was_stalled = conditions.is_true(previous, constants.STALLED)
    before = conditions.find(previous, constants.READY)
    if state.stalled and (not was_stalled or (before or {}).get("reason") != state.reason):
        draft.note("Warning", Reason.STALLED, f"{state.reason}: {state.message}")


def _target(observed: Observed) -> str:
    return observed.spec.target if observed.spec else "?"


def _last_message(status: Mapping[str, Any]) -> str:
    last = status.get("lastRun") or {}
    return str(last.get("message") or last.get("reason") or "no details")


def _exhausted_message(status: Mapping[str, Any], spec: Spec) -> str:
    return (
        f"{status.get('failures')} attempts failed (retry.limit {spec.retry.limit}); last error: "
        f"{_last_message(status).rstrip('. ')}. Fix the cause, then change the spec or annotate "
        f"{constants.ANNOTATION_RETRY}=<any new value> to try again"
    )


def _success_message(run: Mapping[str, Any], revision: str | None) -> str:
    source = run.get("from")
    moved = f"from {source} to {revision}" if source and source != revision else f"at {revision}"
    return f"job {run['job']} succeeded: database {moved}"


def _with_log_tail(detail: str, log_tail: str) -> str:
    if not log_tail:
        return detail
    # Events are capped at 1 KiB by the API server: keep the end of the log, where errors are.
    room = max(0, 1000 - len(detail) - 10)
    return f"{detail}\n--- log tail ---\n{log_tail[-room:]}" if room else detail


def _parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
