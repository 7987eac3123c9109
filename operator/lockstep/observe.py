"""Pure readers that turn Kubernetes objects into the facts planning needs."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from lockstep import constants
from lockstep.planning import JobState, JobView

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
        state=state,
        started_at=parse_time(status.get("startTime")),
        finished_at=finished,
        reason=reason,
        message=message,
    )


def _terminal_state(status: Mapping[str, Any]) -> tuple[JobState, str, str, datetime | None]:
    # Only Complete/Failed are terminal: SuccessCriteriaMet and FailureTarget come earlier,
    # while pods may still be running.
    for condition in status.get("conditions") or []:
        state = TERMINAL_CONDITIONS.get(str(condition.get("type")))
        if state and condition.get("status") == "True":
            finished = parse_time(status.get("completionTime")) or parse_time(
                condition.get("lastTransitionTime")
            )
            return (
                "Succeeded" if state == "Succeeded" else "Failed",
                str(condition.get("reason") or ""),
                str(condition.get("message") or ""),
                finished,
            )
    return "Active", "", "", None


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


def runner_report(message: str) -> dict[str, Any]:
    """The runner's JSON result or error, or {} when the message is not one (plain log text)."""
    try:
        report = json.loads(message)
    except (ValueError, TypeError):
        return {}
    return report if isinstance(report, dict) else {}


def parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0
