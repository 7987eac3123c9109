"""Facts read from DatabaseMigration objects (plain dicts): state, plan, Jobs, GitOps owner.

Pure: no I/O, no clock (times come in as arguments). The commands decide with these; the
render module presents them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from lockstep import conditions, constants
from lockstep.constants import Reason
from lockstep.status import MigrationStatus, migration_status

Tone = Literal["ok", "busy", "bad", "plain"]

# Ready=False reasons that mean a Job is being created or runs now.
RUNNING_REASONS = frozenset(
    {
        Reason.JOB_CREATED,
        Reason.JOB_RUNNING,
        Reason.WAITING_FOR_JOB,
        Reason.RETRY_REQUESTED,
        Reason.APPROVED,
    }
)


@dataclass(frozen=True)
class State:
    """One word for the STATE column, its colour, and the Ready (or Stalled) reason behind it."""

    label: str
    tone: Tone
    reason: str = ""
    message: str = ""


def status_of(migration: Mapping[str, Any]) -> MigrationStatus:
    return MigrationStatus(**migration_status(migration))  # a shallow copy


def spec_of(migration: Mapping[str, Any]) -> dict[str, Any]:
    return dict(migration.get("spec") or {})


def name_of(migration: Mapping[str, Any]) -> str:
    return str((migration.get("metadata") or {}).get("name", ""))


def namespace_of(migration: Mapping[str, Any]) -> str:
    return str((migration.get("metadata") or {}).get("namespace", ""))


def annotations_of(migration: Mapping[str, Any]) -> dict[str, str]:
    return dict((migration.get("metadata") or {}).get("annotations") or {})


def condition(migration: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    return conditions.find(status_of(migration).get("conditions") or [], kind)


def ready_reason(migration: Mapping[str, Any]) -> str:
    ready = conditions.ready(status_of(migration))
    return str(ready.get("reason", "")) if ready else ""


def state_of(migration: Mapping[str, Any]) -> State:
    """The migration's state, from its Ready, Stalled, Reconciling and Drifted conditions."""
    status = status_of(migration)
    found = status.get("conditions") or []
    ready = conditions.ready(status)
    generation = (migration.get("metadata") or {}).get("generation")
    if ready is None:
        return State("Pending", "busy", "", "Lockstep has not looked at this resource yet")
    reason, message = str(ready.get("reason", "")), str(ready.get("message", ""))
    stalled = conditions.find(found, constants.STALLED)
    if stalled is not None and stalled.get("status") == "True":
        return State("Stalled", "bad", str(stalled.get("reason", "")), str(stalled.get("message")))
    if generation is not None and status.get("observedGeneration") != generation:
        return State("Pending", "busy", reason, "Lockstep has not acted on the newest spec yet")
    if ready.get("status") == "True":
        if conditions.is_true(found, constants.DRIFTED):
            drifted = conditions.find(found, constants.DRIFTED) or {}
            return State("Drifted", "busy", reason, str(drifted.get("message", "")))
        return State("Ready", "ok", reason, message)
    return State(
        *_not_ready_label(reason, conditions.is_true(found, constants.RECONCILING)), reason, message
    )


def _not_ready_label(reason: str, reconciling: bool) -> tuple[str, Tone]:
    if reason == Reason.AWAITING_APPROVAL:
        return "AwaitingApproval", "busy"
    if reason in RUNNING_REASONS:
        return "Running", "busy"
    if reason == Reason.RETRY_SCHEDULED:
        return "Retrying", "busy"
    if reason == Reason.SUSPENDED:
        return "Suspended", "plain"
    if reconciling:  # Planning, WaitingForLock, WaitingForRollout, ...: progressing
        return reason or "Reconciling", "busy"
    if reason.endswith(Reason.FAILED):
        return "Failed", "bad"
    return reason or "NotReady", "bad"


def plan_of(migration: Mapping[str, Any]) -> dict[str, Any] | None:
    """status.plan when it names a plan (has a hash), else None."""
    plan = status_of(migration).get("plan")
    if isinstance(plan, Mapping) and plan.get("hash"):
        return dict(plan)
    return None


def approval_problem(migration: Mapping[str, Any]) -> str | None:
    """Why `approve` must not act on this migration now; None when it may.

    Only a migration whose Ready reason is AwaitingApproval is approved, even with --yes: the
    plan a person approves must be the one Lockstep finished planning and now waits on. Earlier
    (Planning, a rehearsal still running) the plan may still change or fail; later there is
    nothing left to approve. --yes only answers the prompt, it never widens what is allowed.
    """
    name = name_of(migration)
    if plan_of(migration) is None:
        return (
            f"databasemigration {name!r} has no plan yet (status.plan is empty): wait until "
            f"Lockstep has planned the run, see: kubectl lockstep describe {name}"
        )
    reason = ready_reason(migration)
    if reason != Reason.AWAITING_APPROVAL:
        return (
            f"databasemigration {name!r} is not awaiting approval (Ready reason: "
            f"{reason or 'none yet'}): there is nothing to approve now"
        )
    return None


def downgrade_problem(migration: Mapping[str, Any]) -> str | None:
    """Why `rollback` must not lower spec.target; None when spec.downgrade is Allow."""
    downgrade = spec_of(migration).get("downgrade") or "Forbid"
    if downgrade == "Allow":
        return None
    owner = gitops_owner(migration)
    where = (
        f"in git, since {owner} manages this resource"
        if owner
        else "in git, if a GitOps tool manages this resource"
    )
    return (
        f"databasemigration {name_of(migration)!r} has spec.downgrade: {downgrade}, so Lockstep "
        f"will not migrate down: set spec.downgrade: Allow ({where}) and run the rollback again"
    )


# Marks that GitOps tools leave on the objects they apply.
_GITOPS_ANNOTATIONS = {
    "argocd.argoproj.io/tracking-id": "Argo CD",
    "meta.helm.sh/release-name": "Helm",
}
_GITOPS_LABELS = {
    "kustomize.toolkit.fluxcd.io/name": "Flux",
    "helm.toolkit.fluxcd.io/name": "Flux",
    "argocd.argoproj.io/instance": "Argo CD",
}
_GITOPS_MANAGERS = {
    "argocd-controller": "Argo CD",
    "argocd-application-controller": "Argo CD",
    "kustomize-controller": "Flux",
    "helm-controller": "Flux",
}


def gitops_owner(migration: Mapping[str, Any]) -> str | None:
    """Argo CD, Flux or Helm when their marks are on the object (labels, annotations, fields)."""
    metadata = migration.get("metadata") or {}
    for key, tool in _GITOPS_ANNOTATIONS.items():
        if key in (metadata.get("annotations") or {}):
            return tool
    for key, tool in _GITOPS_LABELS.items():
        if key in (metadata.get("labels") or {}):
            return tool
    for entry in metadata.get("managedFields") or []:
        manager = _GITOPS_MANAGERS.get(str(entry.get("manager", "")))
        if manager:
            return manager
    return None


def newest_job(jobs: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The newest migrate Job (plan Jobs, labelled phase=plan, run another container)."""
    candidates = [
        job
        for job in jobs
        if ((job.get("metadata") or {}).get("labels") or {}).get(
            constants.LABEL_PHASE, constants.PHASE_MIGRATE
        )
        == constants.PHASE_MIGRATE
    ]
    if not candidates:
        return None
    return max(candidates, key=_created_then_name)


def newest_pod(pods: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    return max(pods, key=_created_then_name, default=None)


def _created_then_name(item: Mapping[str, Any]) -> tuple[str, str]:
    metadata = item.get("metadata") or {}
    return str(metadata.get("creationTimestamp", "")), str(metadata.get("name", ""))


def clean(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The object without metadata.managedFields (noise for people, as kubectl hides it)."""
    result = dict(obj)
    metadata = dict(result.get("metadata") or {})
    metadata.pop("managedFields", None)
    if metadata:
        result["metadata"] = metadata
    return result
