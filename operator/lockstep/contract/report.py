"""What a migration pod reports in its termination message, and the one budget it fits.

Kubernetes keeps at most 4,096 bytes of a container's termination message. Every report a pod
writes (a run's result, a failure, a plan) is cut to :data:`BUDGET` with the helpers here, and
the operator reads it back with :func:`parse`. The JSON keys are the wire format: they never
change without both sides changing together.
"""

# The TypedDict keys are the JSON keys of the wire format (camelCase).

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, Final, Literal, TypedDict, cast

# Kubernetes cuts a termination message at this many bytes.
TERMINATION_MESSAGE_BYTES: Final = 4096
# What a pod writes at most: the message, less a margin.
BUDGET: Final = TERMINATION_MESSAGE_BYTES - 96
# Room for the keys that wrap a report ({"result":"Succeeded",...}).
ENVELOPE: Final = 100
# A run's result before its envelope; `lockstep plan` keeps its plan a little smaller still.
RESULT_BUDGET: Final = BUDGET - ENVELOPE
PLAN_BUDGET: Final = BUDGET - 2 * ENVELOPE
# Each of the two halves of a run's result: the run's own fields, and the plan it checked.
HALF_BUDGET: Final = (BUDGET - 4 * ENVELOPE) // 2
# A failure's message, before it is cut further to fit the budget.
MESSAGE_CHARS: Final = 1500

# Exit codes of `lockstep run`, `plan` and `classify`; the report says the same in words.
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_PLAN_CHANGED: Final = 4
EXIT_REHEARSAL_FAILED: Final = 5
EXIT_CODES: Final[Mapping[str, int]] = {
    "PlanChanged": EXIT_PLAN_CHANGED,
    "RehearsalFailed": EXIT_REHEARSAL_FAILED,
}

Outcome = Literal["Succeeded", "Failed"]


class PlanReport(TypedDict, total=False):
    """A plan in its compact form: the whole report of `lockstep plan` and `lockstep classify`,
    and the ``plan`` key of a run's result or of a PlanChanged failure."""

    hash: str
    available: bool
    unavailableReason: str
    classification: str
    direction: str
    # "from" and "to" are not identifiers: see PlanEnds.
    migrations: list[str]
    migrationsOmitted: int
    statements: int
    summary: dict[str, int]
    destructive: list[str]
    destructiveOmitted: int
    findings: list[dict[str, Any]]
    findingsOmitted: int


# The report keys that are not Python identifiers.
Ends = TypedDict("Ends", {"from": str | None, "to": str | None}, total=False)


class Report(Ends, PlanReport, total=False):
    """Anything a migration pod writes: a run's result, a failure, or (for a plan Job) a plan.

    A run: ``result`` Succeeded, the run's fields, and what its checks added (``plan``,
    ``rehearsal``). A failure: ``result`` Failed, ``reason``, ``message`` (and the new ``plan``
    when it is PlanChanged). A plan Job: the :class:`PlanReport` keys at the top level.
    """

    result: Outcome
    # a run
    tool: str
    applied: list[str]
    appliedCount: int
    appliedTruncated: bool
    durationSeconds: float
    lockWaitSeconds: float
    plan: PlanReport
    rehearsal: dict[str, Any]
    # a failure
    reason: str
    message: str


def failure(reason: str, message: str) -> Report:
    """The report of a command that failed (its message cut to :data:`MESSAGE_CHARS`)."""
    return {"result": "Failed", "reason": reason, "message": message[:MESSAGE_CHARS]}


def parse(text: str) -> Report:
    """The report in a termination message; empty when it holds none (plain log text)."""
    try:
        report = json.loads(text)
    except (ValueError, TypeError):
        return {}
    return cast(Report, report) if isinstance(report, dict) else {}


# --------------------------------------------------------------------------- fitting the budget


def encode(payload: Mapping[str, Any]) -> str:
    """Compact JSON, as pods write it (``json.dumps`` escapes non-ASCII: bytes are characters)."""
    return json.dumps(payload, separators=(",", ":"))


def fits(payload: Mapping[str, Any], limit: int) -> bool:
    return len(encode(payload).encode()) <= limit


def clip(text: str, limit: int) -> str:
    """``text``, cut to ``limit`` characters with "..." when longer."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def longest_fitting(render: Callable[[int], str], limit: int) -> int:
    """Largest n with render(n) within ``limit`` bytes (binary search: render grows with n)."""
    low, high = 0, 1
    while len(render(high).encode()) <= limit and high < 1 << 20:
        high *= 2
    while low < high - 1:
        middle = (low + high) // 2
        if len(render(middle).encode()) <= limit:
            low = middle
        else:
            high = middle
    return low


def message_text(payload: Mapping[str, Any]) -> str:
    """The termination message: compact JSON within :data:`BUDGET`; a long message is cut,
    never the JSON."""
    text = encode(payload)
    message = payload.get("message")
    while len(text) > BUDGET and isinstance(message, str) and message:
        message = message[: max(0, len(message) - (len(text) - BUDGET) - 3)]
        text = encode({**payload, "message": message + "..."})
    return text
