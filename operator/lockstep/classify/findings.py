"""The classifier's public value types: dialects, severities, findings and the report.

A *finding* is one risky thing one SQL statement does (drop a table, rewrite a column
type, build an index under a write lock ...).  ``destructive`` findings lose data and
``breaking`` findings can fail on existing data, block writes or break the running
application; both need a person's approval before the migration runs.  ``info``
findings are only shown.  Kept free of parser imports so that callers can use the
types without loading pglast or sqlglot.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

Dialect = Literal["postgresql", "mysql", "sqlite"]
Severity = Literal["destructive", "breaking", "info"]

NEEDS_APPROVAL: Final[frozenset[Severity]] = frozenset({"destructive", "breaking"})
MAX_STATEMENT_CHARS: Final = 200
_ELLIPSIS: Final = "..."
_DIALECT_OF_ENGINE: Final[Mapping[str, Dialect]] = {
    "postgresql": "postgresql",
    "mysql": "mysql",
    "mariadb": "mysql",
    "sqlite": "sqlite",
}


@dataclass(frozen=True)
class Finding:
    """One risky thing a statement does, and where the statement is."""

    rule: str
    severity: Severity
    message: str
    file: str
    line: int
    statement: str

    def to_dict(self) -> dict[str, Any]:
        """The finding as plain JSON-ready data (for status fields and CLI output)."""
        return {
            "rule": self.rule,
            "severity": self.severity,
            "message": self.message,
            "file": self.file,
            "line": self.line,
            "statement": self.statement,
        }


@dataclass(frozen=True)
class SqlFile:
    """One SQL script of the plan, in the order the plan applies it."""

    name: str
    sql: str


UniqueKey = tuple[str, tuple[str, ...]]  # (table key, lower-case columns in key order)


@dataclass(frozen=True)
class Questions:
    """What the live schema could tell about a plan: the existing tables its findings are
    about, and the unique keys it adds (to be checked for duplicates)."""

    tables: frozenset[str] = frozenset()
    unique_keys: frozenset[UniqueKey] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.tables or self.unique_keys)


@dataclass(frozen=True)
class Report:
    """What the plan's statements do: counts per statement kind and the findings.

    ``questions``: what the live schema could refine (see :mod:`lockstep.classify.live`).
    """

    statements: int
    summary: Mapping[str, int]
    findings: tuple[Finding, ...]
    questions: Questions = Questions()

    @property
    def destructive(self) -> bool:
        """True when some finding needs a person's approval (destructive or breaking)."""
        return any(finding.severity in NEEDS_APPROVAL for finding in self.findings)


def dialect_for_engine(engine: str) -> Dialect:
    """The SQL dialect a database engine speaks: ``mariadb`` reads as ``mysql``.

    Raises ``ValueError`` for an engine the classifier does not know.
    """
    try:
        return _DIALECT_OF_ENGINE[engine]
    except KeyError:
        known = ", ".join(sorted(_DIALECT_OF_ENGINE))
        raise ValueError(f"no SQL dialect for engine {engine!r} (known: {known})") from None


def clip_statement(text: str) -> str:
    """The statement on one line (whitespace runs collapsed), at most 200 characters.

    A longer statement keeps its first 197 characters and ends in ``...``.
    """
    collapsed = " ".join(text.split())
    if len(collapsed) <= MAX_STATEMENT_CHARS:
        return collapsed
    return collapsed[: MAX_STATEMENT_CHARS - len(_ELLIPSIS)] + _ELLIPSIS
