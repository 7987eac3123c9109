"""The plan as a value: what a run would execute, classified and hashed, without the tools.

:mod:`lockstep.pod.run_plan` renders a plan from a tool (Alembic's offline mode, the V/U
files) and checks it under the migration lock; this module holds what needs no tool and no
database driver: the :class:`Plan` itself, its hash, and the plan of SQL a tool already
printed (`lockstep classify`).  Kept free of SQLAlchemy and Alembic so that
`lockstep classify` starts in milliseconds (issue 19: 5,000 statements in 0.5 s whole-process).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from lockstep import classify, sqlfiles
from lockstep.classify import Finding, Report, SqlFile, rules
from lockstep.classify.findings import Questions
from lockstep.classify.live import LiveSchema
from lockstep.contract import plan_budget
from lockstep.pod.run_request import Direction
from lockstep.tools import sql as sql_tool

Classification = Literal["Additive", "Destructive", "Unknown"]

HASH_CHARS: Final = 16
# Findings the live schema can settle (the column's old type says widening or narrowing).
_SCHEMA_RULES: Final = frozenset({rules.ALTER_COLUMN_TYPE})
# Bookkeeping tables of the tools: writing them is not a change a person approves.
IGNORED_TABLES: Final = frozenset({"alembic_version", sql_tool.HISTORY_TABLE})
DESTRUCTIVE_STATEMENT_CHARS: Final = 120
_DIRECTION_NAMES: Final[Mapping[Direction, str]] = {
    "up": "Upgrade",
    "down": "Downgrade",
    "none": "None",
}
# Alembic writes one such comment before each revision in offline mode.
_REVISION_MARKER = re.compile(r"^-- Running (upgrade|downgrade) +(\S*) -> *(\S*)[ \t]*$", re.M)


@dataclass(frozen=True)
class PendingWork:
    """What a run would do to the database as it is now; read without changing anything."""

    direction: Direction
    current: str | None  # the revision the database is at; None: nothing applied
    target: str | None  # the revision the run would reach; None: nothing applied
    revisions: tuple[str, ...]  # versions/revisions that would run, in order
    sql_files: tuple[sqlfiles.SqlFile, ...] = ()  # tool sql: the V (up) or U (down) files, in order


@dataclass(frozen=True)
class Rendered:
    """The SQL of the pending migrations, or why there is none.

    When unavailable, ``files`` hold the migrations' own source (for the hash).
    """

    files: tuple[SqlFile, ...]
    unavailable_reason: str | None = None


@dataclass(frozen=True)
class Plan:
    """What a run would execute, as a person approves it: ``to_dict`` is ``status.plan``."""

    hash: str
    direction: Direction
    current: str | None
    target: str | None
    migrations: tuple[str, ...]  # file names, in the order they would run
    report: Report | None  # None when the SQL could not be rendered
    unavailable_reason: str | None = None

    @property
    def available(self) -> bool:
        return self.report is not None

    @property
    def classification(self) -> Classification:
        if self.report is None:
            return "Unknown"
        return "Destructive" if self.report.destructive else "Additive"

    @property
    def needs_approval(self) -> tuple[Finding, ...]:
        """The findings that make the plan destructive (destructive or breaking)."""
        findings = self.report.findings if self.report else ()
        return tuple(finding for finding in findings if finding.severity != "info")

    def to_dict(self) -> dict[str, Any]:
        """The whole plan, as ``status.plan`` holds it."""
        report = self.report
        payload: dict[str, Any] = {"hash": self.hash, "available": self.available}
        if self.unavailable_reason is not None:
            payload["unavailableReason"] = self.unavailable_reason
        payload["classification"] = self.classification
        payload["direction"] = _DIRECTION_NAMES[self.direction]
        if self.current is not None:
            payload["from"] = self.current
        if self.target is not None:
            payload["to"] = self.target
        payload.update(
            {
                "migrations": list(self.migrations),
                "statements": report.statements if report else 0,
                "summary": dict(report.summary) if report else {},
                "destructive": [_destructive_line(f) for f in self.needs_approval],
                "findings": [finding.to_dict() for finding in report.findings] if report else [],
                "findingsOmitted": 0,
            }
        )
        return payload

    def compact(self, limit: int) -> dict[str, Any]:
        """:meth:`to_dict` cut to at most ``limit`` bytes of JSON.

        Drops findings from the end, then migrations, then shortens and drops
        the destructive lines; every dropped item is counted (``findingsOmitted``,
        ``migrationsOmitted``, ``destructiveOmitted``) so nobody mistakes a cut
        list for a whole one.  Hash, classification and direction always stay.
        """
        return plan_budget.compact(self.to_dict(), limit)

    def summary(self) -> str:
        """One line for logs and messages."""
        ends = f"from {self.current or 'base'} to {self.target or 'base'}"
        head = f"plan {self.hash}: {_DIRECTION_NAMES[self.direction]} {ends}"
        migrations = f"{len(self.migrations)} migration(s)"
        if self.report is None:
            return f"{head}, {migrations}, Unknown: {self.unavailable_reason}"
        counts = f"{migrations}, {self.report.statements} statement(s)"
        risky = self.needs_approval
        if not risky:
            return f"{head}, {counts}, {self.classification}"
        more = f" and {len(risky) - 1} more" if len(risky) > 1 else ""
        return f"{head}, {counts}, {self.classification}: {_destructive_line(risky[0])}{more}"


def _destructive_line(finding: Finding) -> str:
    statement = plan_budget.flat_clip(finding.statement, DESTRUCTIVE_STATEMENT_CHARS)
    return f"{finding.file}:{finding.line}: {statement}"


# --------------------------------------------------------------------------- rendering


def plan_from_offline_sql(
    text: str,
    engine: str,
    salt: str,
    pending: PendingWork,
    live_schema: Callable[[Questions], LiveSchema] | None = None,
) -> Plan:
    """The plan of SQL a tool printed in its own image (`alembic upgrade a:b --sql`).

    The revisions are not known here (the scripts live in that image): the files are named
    after Alembic's `-- Running upgrade a -> b` markers, with the revision ids.

    ``live_schema`` reads the existing columns and the facts the first pass asks about (sizes,
    CHECKs, duplicates of the touched tables); it is called only when the plan has a finding
    the live schema can refine, so the common plan pays for no database driver at all.
    """
    files = _split_by_revision(text, {}) if text.strip() else ()
    dialect = classify.dialect_for_engine(engine)
    report = classify.classify(files, dialect, ignore_tables=IGNORED_TABLES)
    if live_schema is not None and (report.questions or _asks_schema(report)):
        report = reclassify(files, dialect, report, live_schema)
    return Plan(
        hash=plan_hash(salt, pending, files),
        direction=pending.direction,
        current=pending.current,
        target=pending.target,
        migrations=tuple(sql_file.name for sql_file in files),
        report=report,
    )


def reclassify(
    files: Sequence[SqlFile],
    dialect: classify.Dialect,
    report: classify.Report,
    live_schema: Callable[[Questions], LiveSchema],
) -> classify.Report:
    """``report`` again, with what the database answers to its questions (itself when the
    database says nothing).  The hash is not involved: it covers the SQL only."""
    schema, facts = live_schema(report.questions)
    if not schema and facts is None:
        return report
    return classify.classify(
        files, dialect, ignore_tables=IGNORED_TABLES, schema=schema, facts=facts
    )


def _asks_schema(report: classify.Report) -> bool:
    return any(finding.rule in _SCHEMA_RULES for finding in report.findings)


def plan_hash(salt: str, pending: PendingWork, files: Sequence[SqlFile]) -> str:
    """First 16 hex digits of a sha256 over everything that makes the plan what it is.

    Every part is length-prefixed, so no two different plans hash the same
    material (``"ab" + "c"`` versus ``"a" + "bc"``).
    """
    digest = hashlib.sha256()
    parts = [salt, _DIRECTION_NAMES[pending.direction], pending.current, pending.target]
    for sql_file in files:
        parts += [sql_file.name, sql_file.sql]
    for part in parts:
        data = b"\xff" if part is None else part.encode()  # \xff never starts valid UTF-8
        digest.update(len(data).to_bytes(8, "big") + data)
    return digest.hexdigest()[:HASH_CHARS]


def _split_by_revision(text: str, names: Mapping[str, str]) -> tuple[SqlFile, ...]:
    """One file per revision, cut at Alembic's markers, named after the revision's script.

    What comes before the first marker (``BEGIN``, creating ``alembic_version``)
    belongs to the first revision, the final ``COMMIT`` to the last.  Line
    numbers are lines of that revision's rendered SQL.
    """
    markers = list(_REVISION_MARKER.finditer(text))
    if not markers:
        return (SqlFile("alembic-offline.sql", text),)
    files = []
    for index, marker in enumerate(markers):
        start = 0 if index == 0 else marker.start()
        end = markers[index + 1].start() if index + 1 < len(markers) else len(text)
        revision = marker[3] if marker[1] == "upgrade" else marker[2]
        files.append(SqlFile(names.get(revision, revision), text[start:end]))
    return tuple(files)
