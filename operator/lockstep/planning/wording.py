"""Messages of runs and failures, worded in one place (Events are capped at 1 KiB)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lockstep import constants
from lockstep.model import Spec
from lockstep.planning.facts import Observed


def target(observed: Observed) -> str:
    return observed.spec.target if observed.spec else "?"


def last_message(status: Mapping[str, Any]) -> str:
    last = status.get("lastRun") or {}
    return str(last.get("message") or last.get("reason") or "no details")


def exhausted_message(status: Mapping[str, Any], spec: Spec) -> str:
    return (
        f"{status.get('failures')} attempts failed (retry.limit {spec.retry.limit}); last error: "
        f"{last_message(status).rstrip('. ')}. Fix the cause, then change the spec or annotate "
        f"{constants.ANNOTATION_RETRY}=<any new value> to try again"
    )


def success_message(run: Mapping[str, Any], revision: str | None) -> str:
    source = run.get("from")
    moved = f"from {source} to {revision}" if source and source != revision else f"at {revision}"
    return f"job {run['job']} succeeded: database {moved}"


def with_log_tail(detail: str, log_tail: str) -> str:
    if not log_tail:
        return detail
    # Events are capped at 1 KiB by the API server: keep the end of the log, where errors are.
    room = max(0, 1000 - len(detail) - 10)
    return f"{detail}\n--- log tail ---\n{log_tail[-room:]}" if room else detail


def forbidden_message(spec: Spec, status: Mapping[str, Any]) -> str:
    return (
        f"spec.target {spec.target} is below the applied revision {status.get('appliedRevision')}:"
        " rolling back needs spec.downgrade: Allow (or set the target back)"
    )
