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

from lockstep import constants

ConditionStatus = Literal["True", "False", "Unknown"]


@dataclass(frozen=True)
class State:
    """What the conditions should say, before transition times are merged in."""

    ready: bool
    reason: str
    message: str
    reconciling: bool = False
    stalled: bool = False


def isoformat(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def apply_state(
    existing: Iterable[Mapping[str, Any]], state: State, generation: int, now: datetime
) -> list[dict[str, Any]]:
    """New conditions list for `state`, keeping transition times of unchanged statuses.

    Condition types other than Ready/Reconciling/Stalled (e.g. Drifted) are kept as they are.
    """
    conditions = [dict(c) for c in existing]
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
    conditions: Iterable[Mapping[str, Any]],
    kind: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    generation: int,
    now: datetime,
) -> list[dict[str, Any]]:
    updated: list[dict[str, Any]] = []
    found = False
    for condition in conditions:
        if condition.get("type") != kind:
            updated.append(dict(condition))
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
                    isoformat(now)
                    if changed
                    else condition.get("lastTransitionTime", isoformat(now))
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
                "lastTransitionTime": isoformat(now),
            }
        )
    return sorted(updated, key=_order)


def remove_condition(conditions: Iterable[Mapping[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [dict(c) for c in conditions if c.get("type") != kind]


def find(conditions: Iterable[Mapping[str, Any]], kind: str) -> Mapping[str, Any] | None:
    return next((c for c in conditions if c.get("type") == kind), None)


def is_true(conditions: Iterable[Mapping[str, Any]], kind: str) -> bool:
    condition = find(conditions, kind)
    return condition is not None and condition.get("status") == "True"


_ORDER = {constants.READY: 0, constants.RECONCILING: 1, constants.STALLED: 2}


def _order(condition: Mapping[str, Any]) -> tuple[int, str]:
    kind = str(condition.get("type", ""))
    return (_ORDER.get(kind, 9), kind)
