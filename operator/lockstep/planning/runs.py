"""The next run: its attempt number, its direction (upgrade or rollback) and its JobRequest."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from lockstep import constants, tools
from lockstep.constants import Reason
from lockstep.jobs import naming
from lockstep.jobs.naming import JobRequest
from lockstep.model import Spec
from lockstep.planning import approval
from lockstep.planning.facts import JobView, Observed
from lockstep.status import MigrationStatus


def job_request(observed: Observed, status: MigrationStatus, spec: Spec) -> JobRequest:
    plan = approval.current_plan(status, naming.plan_salt(observed.spec_hash))
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


def next_attempt(observed: Observed, phase: str = constants.PHASE_MIGRATE) -> int:
    """One past the newest run of this spec: a re-armed retry never reuses a finished Job's name.

    The runs status records count as well as the Jobs that still exist: finished Jobs are
    deleted (controller.retention), and a new Job under a recorded name would pass for a run
    already recorded (`outcome.unrecorded_finished_job` skips recorded names).
    `status.activeJob` does not count: a Job not yet recorded as finished that this process does
    not see (a new leader whose Job watch has not listed it yet) must be asked for under its
    own name again, so that the API server's 409 adopts it instead of a second run starting.
    """
    attempts = [
        j.attempt
        for j in observed.jobs
        if observed.spec_hash.startswith(j.spec_hash) and j.phase == phase
    ]
    for name in recorded_jobs(observed.status):
        attempt = naming.attempt_of(name, observed.name, observed.spec_hash, phase)
        if attempt is not None:
            attempts.append(attempt)
    return max(attempts, default=-1) + 1


def recorded_jobs(status: Mapping[str, Any]) -> set[str]:
    """Names of the Jobs whose outcome status records (history, lastRun, plan)."""
    names = {str(run.get("job")) for run in status.get("history") or [] if run.get("job")}
    for field in ("lastRun", "plan"):
        name = (status.get(field) or {}).get("job")
        if name:
            names.add(str(name))
    return names


def newest_per_phase(jobs: Iterable[JobView], spec_hash: str) -> list[JobView]:
    """The newest attempt of each phase among the Jobs of this spec: the ones an outcome is
    read from (`spec_hash` is the full hash; a Job's label holds its prefix)."""
    newest: dict[str, JobView] = {}
    for job in sorted(jobs, key=lambda j: j.attempt):
        if spec_hash.startswith(job.spec_hash):
            newest[job.phase] = job
    return list(newest.values())
