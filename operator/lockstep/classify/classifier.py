"""Classify a migration plan: read every file's statements in order and collect findings.

The plan's files are read in the order given, with one shared :class:`PlanState`, so a
table created in an earlier file counts as new (empty) in later ones.  Dialect readers
yield statements with character offsets; this module turns offsets into line numbers
and statement text into the clipped one-line form findings carry.
"""

from __future__ import annotations

import bisect
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Final

from lockstep import sql_file_modes, sqlfiles
from lockstep.classify import live, rules
from lockstep.classify.findings import Dialect, Finding, Report, SqlFile, clip_statement
from lockstep.classify.plan import Classified, Issue, PlanState, Schema

# Every statement sql_file_modes.outside_transaction_only names holds one of these words.
_OUTSIDE_TRANSACTION_WORDS: Final = re.compile(
    r"\b(CONCURRENTLY|VACUUM|DATABASE|TABLESPACE|SYSTEM)\b", re.IGNORECASE
)


def classify(
    files: Sequence[SqlFile],
    dialect: Dialect,
    *,
    ignore_tables: frozenset[str] = frozenset(),
    schema: Schema | None = None,
    facts: live.LiveFacts | None = None,
) -> Report:
    """Classify the statements of ``files`` (in plan order) written in ``dialect``.

    Statements touching ``ignore_tables`` (bookkeeping tables such as
    ``alembic_version``; compared case-insensitively, schema ignored) are counted but
    produce no findings.  ``schema`` holds what the database says about the columns of
    existing tables (their types, from the live catalogs), so that a type change can be
    told to widen or narrow; without it such changes are judged from the plan alone.
    ``facts`` holds what the database says about the touched tables (sizes, CHECK
    constraints, duplicates; see :mod:`lockstep.classify.live`); the report's ``questions``
    name what a caller could read to refine it.
    """
    state = PlanState.ignoring(
        ignore_tables,
        schema,
        not_null_proven=facts.not_null_checks if facts else (),
        checks=facts.checks if facts else None,
    )
    kinds: Counter[str] = Counter()
    findings: list[Finding] = []
    issues: list[Issue] = []
    for file in files:
        state.begin_file()
        lines = _LineIndex(file.sql)
        own_file = sqlfiles.parse_file_name(file.name) is not None
        for statement in _read(file.sql, state, dialect, own_file):
            kinds[statement.kind] += 1
            issues.extend(statement.issues)
            findings.extend(_findings(file, statement, lines, facts))
        findings.extend(_transaction_findings(file, dialect))
    return Report(
        sum(kinds.values()), dict(kinds), tuple(findings), live.questions(issues, state.asked)
    )


def _read(sql: str, state: PlanState, dialect: Dialect, own_file: bool) -> Iterator[Classified]:
    # Imported here: each parser costs start-up time a plan of the other dialect need not pay.
    if dialect == "postgresql":
        from lockstep.classify import postgres

        return postgres.read_script(sql, state, own_file=own_file)
    from lockstep.classify import mysql

    return mysql.read_script(sql, state, dialect)


def _findings(
    file: SqlFile, statement: Classified, lines: _LineIndex, facts: live.LiveFacts | None
) -> Iterator[Finding]:
    if not statement.issues:
        return
    line = lines.line_of(statement.start)
    text = clip_statement(file.sql[statement.start : statement.end])
    for issue in statement.issues:
        refined = live.refine(issue, facts)
        yield Finding(refined.rule, refined.severity, refined.message, file.name, line, text)


def _transaction_findings(file: SqlFile, dialect: Dialect) -> Iterator[Finding]:
    """Statements such as CREATE INDEX CONCURRENTLY in a file that would run in a transaction.

    Only Lockstep's own V/U files: how another tool's rendered SQL runs is the tool's choice
    (Alembic's ``autocommit_block``, say), not this file's shape.
    """
    if sqlfiles.parse_file_name(file.name) is None:
        return
    if dialect == "mysql" or not _OUTSIDE_TRANSACTION_WORDS.search(file.sql):
        return  # no statement that needs to run outside a transaction: skip the split
    for statement, kind in sql_file_modes.outside_statements_in_transaction(
        file.name, file.sql, dialect
    ):
        issue = rules.no_transaction_statement_in_transaction(kind)
        text = clip_statement(statement.text)
        yield Finding(issue.rule, issue.severity, issue.message, file.name, statement.line, text)


class _LineIndex:
    """Line numbers by binary search over the offsets of line ends: a file with many
    findings costs O(n log n), not O(n) per finding (which made large files quadratic)."""

    def __init__(self, text: str) -> None:
        self._ends = [match.start() for match in re.finditer("\n", text)]

    def line_of(self, offset: int) -> int:
        return bisect.bisect_left(self._ends, offset) + 1


def line_of(text: str, offset: int) -> int:
    """The 1-based line of ``text`` that holds the character at ``offset``."""
    return text.count("\n", 0, offset) + 1
