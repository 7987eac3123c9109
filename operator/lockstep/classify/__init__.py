"""Classify SQL migration statements by risk, before they run.

:func:`classify` reads a plan's SQL files with a real parser (pglast for PostgreSQL,
sqlglot for MySQL/MariaDB and SQLite) and reports what kinds of statements the plan
holds and which of them are risky: ``destructive`` (data loss: drops, truncates,
unqualified deletes and updates), ``breaking`` (can fail on existing data, block writes
or break code still running: renames, type changes, NOT NULL columns, unique and
foreign keys, indexes built under lock, statements the parser cannot read) or ``info``.
Destructive and breaking findings need a person's approval.

Tables created earlier in the plan hold no data, so changes to them (including dropping
them again) are not findings.  Pure: no I/O.

Modules: ``classifier`` walks the plan; ``findings`` and ``plan`` hold the shapes and what
earlier statements taught; ``rules`` words each finding; ``coltypes`` compares column types;
``live`` refines findings with what the database says about the touched tables (sizes, CHECK
constraints, duplicates), given as data by the caller.
Per parser, ``<dialect>_statements`` splits a script and names each statement's kind,
``<dialect>_columns`` reads column definitions, and ``postgres`` / ``mysql`` (with
``mysql_alter`` for ``ALTER TABLE``) decide which rules a statement meets.
"""

from lockstep.classify.classifier import classify
from lockstep.classify.findings import (
    Dialect,
    Finding,
    Report,
    Severity,
    SqlFile,
    dialect_for_engine,
)

__all__ = [
    "Dialect",
    "Finding",
    "Report",
    "Severity",
    "SqlFile",
    "classify",
    "dialect_for_engine",
]
