"""The rules about time under lock: rewrites, table copies, scans and locks that block others.

These statements lose no data, but while they run the table (or the whole partitioned table)
refuses writes, often reads too, for as long as the table takes to rewrite, copy or scan:
on a large table that is an outage.  Each is ``breaking``, so it needs approval.  The
messages name the non-blocking form where the database has one (``CONCURRENTLY``,
``NOT VALID`` then ``VALIDATE`` in a later file, ``ALGORITHM=INPLACE, LOCK=NONE``).

Shared by both dialect readers, like :mod:`lockstep.classify.rules`.
"""

from __future__ import annotations

from typing import Final

from lockstep.classify.plan import Issue

ADD_COLUMN_REWRITES_TABLE: Final = "add-column-rewrites-table"
TABLE_REWRITE: Final = "table-rewrite"
BLOCKING_WITHOUT_CONCURRENTLY: Final = "blocking-without-concurrently"
SCAN_UNDER_LOCK: Final = "scan-under-lock"
EXPLICIT_LOCK: Final = "explicit-lock"
ALTER_COPIES_TABLE: Final = "alter-copies-table"
ALTER_LOCKS_WRITES: Final = "alter-locks-writes"


def add_column_rewrites_table(table: str, column: str, why: str) -> Issue:
    return Issue(
        ADD_COLUMN_REWRITES_TABLE,
        "breaking",
        f"Adds column {table}.{column} {why}, so every existing row is rewritten while reads "
        "and writes wait. Add the column without it (nullable, or with a constant DEFAULT), "
        "backfill in batches, then set the default for new rows.",
        table=table,
        lock_only=True,
    )


def table_rewrite(what: str, table: str) -> Issue:
    return Issue(
        TABLE_REWRITE,
        "breaking",
        f"{what} rewrites {table} completely while reads and writes wait. Run it at a quiet "
        "time on purpose, or use an online tool (pg_repack) instead.",
        table=table,
        lock_only=True,
    )


def blocking_without_concurrently(what: str, name: str, lock: str) -> Issue:
    return Issue(
        BLOCKING_WITHOUT_CONCURRENTLY,
        "breaking",
        f"{what} {name} without CONCURRENTLY blocks {lock} until it finishes. Use "
        f"CONCURRENTLY, in a file of its own: Lockstep runs such a file without a transaction.",
    )


def scan_under_lock(what: str, table: str, advice: str) -> Issue:
    return Issue(
        SCAN_UNDER_LOCK,
        "breaking",
        f"{what} reads every row of {table} while writes to it wait, and fails on rows that "
        f"do not fit. {advice}",
    )


def type_change_rechecks(table: str, column: str, checks: tuple[str, ...]) -> Issue:
    """PostgreSQL rebuilds the CHECK constraints on a column whose type changes, and
    rebuilding one reads every row, even when the type itself needs no rewrite."""
    names = ", ".join(checks)
    return Issue(
        SCAN_UNDER_LOCK,
        "breaking",
        f"Changing the type of {table}.{column} re-checks its CHECK constraint(s) {names} "
        f"against every row of {table} while reads and writes wait (the database says they "
        "exist). Run it at a quiet time, or drop the constraint and add it back NOT VALID, "
        "then VALIDATE in a later file.",
        table=table,
        lock_only=True,
    )


def validate_in_same_transaction(table: str, constraint: str) -> Issue:
    return scan_under_lock(
        f"Validating {constraint} in the transaction that added it",
        table,
        "The ADD took a lock that blocks writes and holds it until the file commits: "
        "validate the constraint in a later migration file.",
    )


def explicit_lock(tables: str) -> Issue:
    return Issue(
        EXPLICIT_LOCK,
        "breaking",
        f"Locks {tables} explicitly until the migration's transaction ends, blocking the "
        "application for all that time. Leave the locking to the statements themselves.",
    )


def alter_copies_table(table: str, why: str) -> Issue:
    return Issue(
        ALTER_COPIES_TABLE,
        "breaking",
        f"Changes {table} in a way that needs a full copy of the table ({why}); writes wait "
        "until the copy is done. Make the change online (a new column, backfilled), or run "
        "it with an online schema change tool (gh-ost, pt-online-schema-change).",
        table=table,
        lock_only=True,
    )


def alter_locks_writes(table: str, option: str) -> Issue:
    return Issue(
        ALTER_LOCKS_WRITES,
        "breaking",
        f"Alters {table} with {option}, which blocks writes until the ALTER finishes. Leave "
        "the option out or ask for ALGORITHM=INPLACE, LOCK=NONE.",
        table=table,
        lock_only=True,
    )
