"""Pure readers that turn Kubernetes objects into the facts planning needs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from lockstep import constants, timestamps
from lockstep.contract import report as termination
from lockstep.jobs import rehearsal
from lockstep.planning.facts import JobState, JobView, LockWait, Rollout

TERMINAL_CONDITIONS = {"Complete": "Succeeded", "Failed": "Failed"}


def job_view(job: Mapping[str, Any]) -> JobView:
    metadata = job.get("metadata") or {}
    labels = metadata.get("labels") or {}
    status = job.get("status") or {}
    state, reason, message, finished = _terminal_state(status)
    return JobView(
        name=str(metadata.get("name")),
        spec_hash=str(labels.get(constants.LABEL_SPEC_HASH, "")),
        attempt=_int(labels.get(constants.LABEL_ATTEMPT)),
        downgrade=labels.get(constants.LABEL_DIRECTION) == "down",
        phase=str(labels.get(constants.LABEL_PHASE) or constants.PHASE_MIGRATE),
        state=state,
        started_at=timestamps.parse(status.get("startTime")),
        finished_at=finished,
        reason=reason,
        message=message,
    )


def terminal_condition(status: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """A Job's Complete or Failed condition with status "True" (the first); None while it runs.

    Only Complete/Failed are terminal: SuccessCriteriaMet and FailureTarget come earlier, while
    pods may still be running."""
    for condition in status.get("conditions") or []:
        if condition.get("type") in TERMINAL_CONDITIONS and condition.get("status") == "True":
            return condition  # type: ignore[no-any-return]
    return None


def _terminal_state(status: Mapping[str, Any]) -> tuple[JobState, str, str, datetime | None]:
    condition = terminal_condition(status)
    if condition is None:
        return "Active", "", "", None
    finished = timestamps.parse(status.get("completionTime")) or timestamps.parse(
        condition.get("lastTransitionTime")
    )
    return (
        "Succeeded" if condition.get("type") == "Complete" else "Failed",
        str(condition.get("reason") or ""),
        str(condition.get("message") or ""),
        finished,
    )


def lock_wait(pod: Mapping[str, Any] | None, job: str) -> LockWait | None:
    """Whether the pod's lock sidecar is still waiting for the database lock, or gave up."""
    if not pod:
        return None
    for status in (pod.get("status") or {}).get("initContainerStatuses") or []:
        if status.get("name") != constants.LOCK_CONTAINER:
            continue
        if _exited_with(status, constants.EXIT_LOCK_TIMEOUT):
            return LockWait(job=job, since=None, timed_out=True)
        running = (status.get("state") or {}).get("running")
        if running and not status.get("started"):
            return LockWait(
                job=job, since=timestamps.parse(running.get("startedAt")), timed_out=False
            )
    return None


def lock_wait_seconds(pod: Mapping[str, Any] | None) -> float | None:
    """Seconds between the lock sidecar starting and the migration starting (the lock wait)."""
    if not pod:
        return None
    status = pod.get("status") or {}
    sidecar = _container_started(status.get("initContainerStatuses"), constants.LOCK_CONTAINER)
    migrate = _container_started(status.get("containerStatuses"), constants.MIGRATE_CONTAINER)
    if sidecar is None or migrate is None:
        return None
    return max((migrate - sidecar).total_seconds(), 0.0)


def _container_started(statuses: Any, name: str) -> datetime | None:
    for status in statuses or []:
        if status.get("name") != name:
            continue
        state = status.get("state") or {}
        for phase in ("running", "terminated"):
            started = timestamps.parse((state.get(phase) or {}).get("startedAt"))
            if started is not None:
                return started
    return None


def _exited_with(status: Mapping[str, Any], code: int) -> bool:
    for key in ("state", "lastState"):
        terminated = (status.get(key) or {}).get("terminated") or {}
        if terminated.get("exitCode") == code:
            return True
    return False


def container_terminated(pod: Mapping[str, Any] | None, container: str) -> bool:
    """Whether this copy of the pod already shows the container's end (and its message)."""
    statuses = (pod or {}).get("status", {}).get("containerStatuses") or []
    return any(
        s.get("name") == container and (s.get("state") or {}).get("terminated") for s in statuses
    )


def termination_message(pod: Mapping[str, Any] | None, container: str) -> str:
    """The terminated container's message (the runner writes its JSON result there)."""
    if not pod:
        return ""
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    for status in statuses:
        if status.get("name") == container:
            terminated = (status.get("state") or {}).get("terminated") or {}
            return str(terminated.get("message") or "")
    return ""


def runner_report(message: str) -> termination.Report:
    """The runner's JSON result or error, or {} when the message is not one (plain log text)."""
    return termination.parse(message)


@dataclass(frozen=True)
class RehearsalStepFailure:
    """A rehearsal init container (`rehearse-<n>-<what>`) that exited non-zero."""

    container: str
    step: int
    steps: int
    command: str
    exit_code: int
    message: str

    def describe(self) -> str:
        detail = f": {self.message.strip()[-600:]}" if self.message.strip() else ""
        return (
            f"rehearsal step {self.step} of {self.steps} ({self.container}: {self.command}) "
            f"failed with exit code {self.exit_code} on the shadow database{detail}; the real "
            "database was not touched"
        )


def failed_rehearsal_step(pod: Mapping[str, Any] | None) -> RehearsalStepFailure | None:
    """The first rehearsal step of a Job pod that failed, if one did."""
    if not pod:
        return None
    specs = {
        c.get("name"): c
        for c in (pod.get("spec") or {}).get("initContainers") or []
        if str(c.get("name", "")).startswith(rehearsal.REHEARSAL_PREFIX)
    }
    for status in (pod.get("status") or {}).get("initContainerStatuses") or []:
        name = str(status.get("name"))
        terminated = (status.get("state") or {}).get("terminated") or {}
        if name in specs and terminated and terminated.get("exitCode", 0) != 0:
            return RehearsalStepFailure(
                container=name,
                step=_int(name.removeprefix(rehearsal.REHEARSAL_PREFIX).split("-", 1)[0]),
                steps=len(specs),
                command=" ".join(str(a) for a in specs[name].get("command") or []),
                exit_code=int(terminated.get("exitCode") or 0),
                message=_said(str(terminated.get("message") or "")),
            )
    return None


def failed_claim(pod: Mapping[str, Any] | None) -> tuple[str, str] | None:
    """Reason and message of a `lockstep-claim` init container that refused, if it did."""
    for status in ((pod or {}).get("status") or {}).get("initContainerStatuses") or []:
        terminated = (status.get("state") or {}).get("terminated") or {}
        if status.get("name") == constants.CLAIM_CONTAINER and terminated.get("exitCode", 0):
            said = runner_report(str(terminated.get("message") or ""))
            return (
                str(said.get("reason") or "VersionTableInUse"),
                str(said.get("message") or terminated.get("message") or ""),
            )
    return None


def _said(message: str) -> str:
    """A step's own words: the "message" of a Lockstep JSON result, or the log text as it is."""
    return str(runner_report(message).get("message") or message)


def reported_plan(report: Mapping[str, Any]) -> dict[str, Any] | None:
    """The plan in a runner report: the whole report of `lockstep plan`, or its "plan" key."""
    plan = report.get("plan") if "plan" in report else report
    if isinstance(plan, Mapping) and plan.get("hash") and "classification" in plan:
        return dict(plan)
    return None


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def rollout(kind: str, name: str, workload: Mapping[str, Any] | None) -> Rollout:
    """Whether a Deployment/StatefulSet has fully rolled out its current template."""
    if workload is None:
        return Rollout(kind, name, False, f"{kind} {name} does not exist")
    metadata, spec = workload.get("metadata") or {}, workload.get("spec") or {}
    status = workload.get("status") or {}
    wanted = int(spec.get("replicas", 1))
    if status.get("observedGeneration", 0) < metadata.get("generation", 0):
        return Rollout(kind, name, False, f"{kind} {name}: the controller has not seen the change")
    updated = int(status.get("updatedReplicas") or 0)
    available = int(status.get("availableReplicas") or 0)
    total = int(status.get("replicas") or 0)
    done = updated >= wanted and available >= wanted and total <= wanted
    return Rollout(
        kind,
        name,
        done,
        f"{kind} {name}: {updated}/{wanted} updated, {available}/{wanted} available"
        + ("" if total <= wanted else f", {total - wanted} old still running"),
    )
