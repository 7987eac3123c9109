"""kstatus rules for conditions: Ready always there, Reconciling/Stalled only while true."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from lockstep import conditions
from lockstep.conditions import State

T0 = datetime(2026, 1, 1, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)


def by_type(items: list[dict[str, object]]) -> dict[object, dict[str, object]]:
    return {c["type"]: c for c in items}


def test_ready_is_always_present_and_abnormal_conditions_only_while_true() -> None:
    result = by_type(conditions.apply_state([], State(True, "Succeeded", "ok"), 1, T0))
    assert set(result) == {"Ready"}
    result = by_type(
        conditions.apply_state([], State(False, "JobRunning", "x", reconciling=True), 1, T0)
    )
    assert set(result) == {"Ready", "Reconciling"}
    assert result["Reconciling"]["status"] == "True"


def test_reconciling_disappears_when_done() -> None:
    running = conditions.apply_state([], State(False, "JobRunning", "x", reconciling=True), 1, T0)
    done = by_type(conditions.apply_state(running, State(True, "Succeeded", "ok"), 1, T1))
    assert "Reconciling" not in done
    assert done["Ready"]["status"] == "True"


def test_transition_time_changes_only_with_status() -> None:
    first = conditions.apply_state([], State(False, "JobCreated", "a", reconciling=True), 1, T0)
    second = by_type(
        conditions.apply_state(first, State(False, "JobRunning", "b", reconciling=True), 2, T1)
    )
    assert second["Ready"]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert second["Ready"]["reason"] == "JobRunning"
    assert second["Ready"]["observedGeneration"] == 2
    third = by_type(
        conditions.apply_state(list(second.values()), State(True, "Succeeded", "c"), 2, T1)
    )
    assert third["Ready"]["lastTransitionTime"] == "2026-01-01T00:05:00Z"


def test_stalled_carries_reason_and_message() -> None:
    result = by_type(
        conditions.apply_state([], State(False, "RetriesExhausted", "gave up", stalled=True), 4, T0)
    )
    assert result["Stalled"] == {
        "type": "Stalled",
        "status": "True",
        "reason": "RetriesExhausted",
        "message": "gave up",
        "observedGeneration": 4,
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }


def test_other_condition_types_are_kept() -> None:
    drifted = [{"type": "Drifted", "status": "True", "reason": "Drift", "message": "m"}]
    result = by_type(conditions.apply_state(drifted, State(True, "Succeeded", "ok"), 1, T0))
    assert result["Drifted"]["status"] == "True"
    assert next(iter(result)) == "Ready"
