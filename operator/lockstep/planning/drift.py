"""Drift: the version table disagrees with what Lockstep applied. Reported, never repaired."""

from __future__ import annotations

from lockstep import conditions, constants
from lockstep.constants import Reason
from lockstep.planning.draft import Draft
from lockstep.planning.facts import DriftReading


def check_drift(draft: Draft, reading: DriftReading) -> None:
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
