"""kstatus-compliant conditions, as pure functions over the `status.conditions` list.

kstatus (what Flux and `kubectl wait` rely on) reads `Reconciling` and `Stalled` as
"abnormal-true" conditions: they must be present only while true. `Ready` is always present.
A transition time changes only when the status of a condition changes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from lockstep import constants, timestamps
from lockstep.status import Condition

ConditionStatus = Literal["True", "False", "Unknown"]


@dataclass(frozen=True)
class State:
    """What the conditions should say, before transition times are merged in."""

    ready: bool
    reason: str
    message: str
    reconciling: bool = False
    stalled: bool = False


def apply_state(
    existing: Iterable[Condition], state: State, generation: int, now: datetime
) -> list[Condition]:
    """New conditions list for `state`, keeping transition times of unchanged statuses.

    Condition types other than Ready/Reconciling/Stalled (e.g. Drifted) are kept as they are.
    """
    conditions = [c.copy() for c in existing]
    ready_status: ConditionStatus = "True" if state.ready else "False"
    conditions = set_condition(
        conditions, constants.READY, ready_status, state.reason, state.message, generation, now
    )
    for kind, active in (
        (constants.RECONCILING, state.reconciling),
        (constants.STALLED, state.stalled),
    ):
        if active:
            conditions = set_condition(
                conditions, kind, "True", state.reason, state.message, generation, now
            )
        else:
            conditions = remove_condition(conditions, kind)
    return conditions


def set_condition(
    conditions: Iterable[Condition],
    kind: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    generation: int,
    now: datetime,
) -> list[Condition]:
    updated: list[Condition] = []
    found = False
    for condition in conditions:
        if condition.get("type") != kind:
            updated.append(condition.copy())
            continue
        found = True
        changed = condition.get("status") != status
        updated.append(
            {
                "type": kind,
                "status": status,
                "reason": reason,
                "message": message,
                "observedGeneration": generation,
                "lastTransitionTime": (
                    timestamps.isoformat(now)
                    if changed
                    else condition.get("lastTransitionTime", timestamps.isoformat(now))
                ),
            }
        )
    if not found:
        updated.append(
            {
                "type": kind,
                "status": status,
                "reason": reason,
                "message": message,
                "observedGeneration": generation,
                "lastTransitionTime": timestamps.isoformat(now),
            }
        )
    return sorted(updated, key=_order)


def remove_condition(conditions: Iterable[Condition], kind: str) -> list[Condition]:
    return [c.copy() for c in conditions if c.get("type") != kind]


def find(conditions: Iterable[Condition], kind: str) -> Condition | None:
    return next((c for c in conditions if c.get("type") == kind), None)


def ready(status: Mapping[str, Any]) -> Condition | None:
    """The Ready condition of a DatabaseMigration status, if it has one yet."""
    return find(status.get("conditions") or [], constants.READY)


def is_true(conditions: Iterable[Condition], kind: str) -> bool:
    condition = find(conditions, kind)
    return condition is not None and condition.get("status") == "True"


_ORDER = {constants.READY: 0, constants.RECONCILING: 1, constants.STALLED: 2}


def _order(condition: Condition) -> tuple[int, str]:
    kind = str(condition.get("type", ""))
    return (_ORDER.get(kind, 9), kind)
