"""What one run of the built-in runner is asked to do, and what it reports.

:class:`RunRequest` is what ``lockstep run`` (or local mode) asks of
:func:`lockstep.pod.runner.run`; :class:`RunResult` is what comes back, small enough for
the container's termination message (see :mod:`lockstep.contract.report`).
:class:`Outcome` is what one tool's migrator did.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from lockstep import constants, errors
from lockstep.contract import report

Tool = Literal["sql", "alembic"]
Direction = Literal["up", "down", "none"]
TOOLS: Final[tuple[str, ...]] = ("sql", "alembic")
_REVISION_CHARS: Final = 200
_APPLIED_ITEM_CHARS: Final = 40
# The CRD's rule (constants.STATEMENT_LOCK_TIMEOUT_PATTERN): what the API server accepts runs.
_DURATION = re.compile(constants.STATEMENT_LOCK_TIMEOUT_PATTERN)
_UNIT_MS: Final = {"ms": 1, "s": 1000, "min": 60_000}


@dataclass(frozen=True)
class RunRequest:
    tool: Tool
    source_dir: Path
    database_url: str = field(repr=False)  # holds the password: keep it out of reprs
    target: str = "head"
    allow_downgrade: bool = False
    lock_wait_seconds: float = 600.0
    statement_lock_timeout: str | None = None  # "5s", "500ms", "1m"; None leaves the default
    # False when a lock sidecar in the same pod already holds the lock: waiting
    # for it here would wait for ourselves.
    take_lock: bool = True
    # Where the tool records what it applied (None: the tool's default; tool sql's is
    # lockstep_schema_history) and the schema that holds it (None: the connection's current one).
    version_table: str | None = None
    version_table_schema: str | None = None
    # "namespace/name" of the DatabaseMigration: claims the version table, so that a second
    # resource sharing it is refused by name (None: a hand-run `lockstep run`, no claim).
    owner: str | None = None
    baseline: str | None = None  # tool sql: adopt an existing schema at this version


@dataclass(frozen=True)
class Outcome:
    """What a tool's migrator did on the migration connection."""

    direction: Direction
    from_revision: str | None
    to_revision: str | None
    applied: list[str]
    baselined: list[str] = field(default_factory=list)  # recorded as applied, not run


@dataclass(frozen=True)
class RunResult:
    tool: str
    direction: Direction
    from_revision: str | None
    to_revision: str | None
    applied: list[str]  # versions/revisions run, in the order they ran
    duration_seconds: float
    lock_wait_seconds: float
    # What the checks before migrating reported (the plan, the rehearsal), by result key.
    extras: Mapping[str, Any] = field(default_factory=dict)
    baselined: list[str] = field(default_factory=list)  # spec.baseline: recorded, not run

    def summary(self) -> str:
        """One line a person reads: what moved where, in the same words in a Job and locally."""
        adopted = (
            f"baselined {len(self.baselined)} existing migration(s) up to {self.baselined[-1]} "
            f"(recorded, not run); "
            if self.baselined
            else ""
        )
        if not self.applied:
            return f"{adopted}up to date at revision {self.to_revision or 'none'}: nothing to apply"
        moved = f"{self.from_revision or 'empty'} → {self.to_revision or 'empty'}"
        verb = "rolled back" if self.direction == "down" else "applied"
        return (
            f"{adopted}{verb} {len(self.applied)} migration(s) ({', '.join(self.applied)}): "
            f"{moved} in {self.duration_seconds:.2f}s"
        )

    def to_json(self) -> str:
        """Compact JSON below :data:`lockstep.contract.report.RESULT_BUDGET` bytes.

        The Job writes it as its termination message, which Kubernetes caps.
        The run's own fields stay below :data:`~lockstep.contract.report.HALF_BUDGET`: when
        ``applied`` is too long, its head is kept and ``appliedTruncated`` set
        (``appliedCount`` is always the full count).  Each check keeps its
        extra small itself; one that would still overflow is replaced by a note.
        """
        return report.encode(_with_extras(self._run_payload(), self.extras))

    def _run_payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "tool": self.tool,
            "direction": self.direction,
            "from": _clip(self.from_revision),
            "to": _clip(self.to_revision),
            "applied": list(self.applied),
            "appliedCount": len(self.applied),
            "durationSeconds": round(self.duration_seconds, 3),
            "lockWaitSeconds": round(self.lock_wait_seconds, 3),
        }
        if self.baselined:
            # The first and last version: a baseline may cover hundreds of files.
            payload["baselined"] = [self.baselined[0], self.baselined[-1]]
            payload["baselinedCount"] = len(self.baselined)
        if report.fits(payload, report.HALF_BUDGET):
            return payload
        payload["appliedTruncated"] = True
        keep = report.longest_fitting(
            lambda n: report.encode({**payload, "applied": self.applied[:n]}), report.HALF_BUDGET
        )
        payload["applied"] = [
            report.clip(item, _APPLIED_ITEM_CHARS) for item in self.applied[:keep]
        ]
        return payload


def result_of(
    request: RunRequest,
    outcome: Outcome,
    *,
    duration_seconds: float,
    lock_wait_seconds: float,
    extras: Mapping[str, Any],
) -> RunResult:
    """What a run reports, from what its migrator did (both runners, the same fields)."""
    return RunResult(
        tool=request.tool,
        direction=outcome.direction,
        from_revision=outcome.from_revision,
        to_revision=outcome.to_revision,
        applied=outcome.applied,
        duration_seconds=duration_seconds,
        lock_wait_seconds=lock_wait_seconds,
        extras=extras,
        baselined=outcome.baselined,
    )


def _with_extras(payload: dict[str, Any], extras: Mapping[str, Any]) -> dict[str, Any]:
    combined = dict(payload)
    for key, value in extras.items():
        combined[key] = value
        if not report.fits(combined, report.RESULT_BUDGET):
            combined[key] = {"omitted": "too large for the termination message"}
    return combined


def _clip(value: str | None) -> str | None:
    return None if value is None else report.clip(value, _REVISION_CHARS)


def parse_duration_ms(text: str) -> int:
    """``"5s"`` → 5000, ``"500ms"`` → 500, ``"2min"`` → 120000 (a unit is required)."""
    match = _DURATION.match(text)
    if match is None:
        raise errors.InvalidRequest(
            f"statement lock timeout {text!r} is not a duration such as 500ms, 5s or 2min"
        )
    unit = match[1]
    return int(text[: -len(unit)]) * _UNIT_MS[unit]  # the pattern allows no zero
