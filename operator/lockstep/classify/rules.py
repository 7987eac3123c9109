"""The rules: one function per risky change, giving its rule id, severity and message.

Both dialect readers build their issues here, so a rule reads the same whatever the
database.  Each message says what the statement does, why that is risky and what to do
instead.  ``destructive`` rules lose data; ``breaking`` rules can fail on existing data,
block writes for the length of a table scan or break application code still running
against the old schema.

Decisions worth knowing:

* Adding a foreign key or CHECK constraint to an existing table is ``breaking``, not
  ``info``: it scans the table under a lock and fails on rows that violate it.  On
  PostgreSQL, ``NOT VALID`` avoids both and is not a finding; ``VALIDATE CONSTRAINT``
  later is not one either.  A foreign key declared inline on a new column is not a
  finding: the column is all NULL, so nothing can violate it.
* MySQL builds most indexes online, so an index is ``create-index-locks-writes`` only
  when the statement asks for ``ALGORITHM=COPY`` or ``LOCK=SHARED|EXCLUSIVE``; SQLite
  has no online index build to ask for, so a plain index is never a finding there.
* Renaming a PostgreSQL enum value makes the old value disappear, so it is reported
  under ``enum-value-removal`` (``breaking``); removing MySQL ENUM/SET members is
  ``destructive``, because rows holding them fail the migration or are blanked.
* ``add-not-null-without-default`` also covers making an existing column NOT NULL.
* PostgreSQL varchar/text widening needs no table rewrite and is not a finding; other
  type changes are, with "narrowing" in the message when the earlier type is known.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Literal

from lockstep.classify.coltypes import Change, ColumnType
from lockstep.classify.findings import Dialect
from lockstep.classify.plan import Issue

DROP_TABLE: Final = "drop-table"
DROP_COLUMN: Final = "drop-column"
DROP_SCHEMA: Final = "drop-schema"
DROP_DATABASE: Final = "drop-database"
TRUNCATE: Final = "truncate"
DELETE_WITHOUT_WHERE: Final = "delete-without-where"
UPDATE_WITHOUT_WHERE: Final = "update-without-where"
DROP_TYPE: Final = "drop-type"
RENAME_TABLE: Final = "rename-table"
RENAME_COLUMN: Final = "rename-column"
ALTER_COLUMN_TYPE: Final = "alter-column-type"
ENUM_VALUE_REMOVAL: Final = "enum-value-removal"
ADD_NOT_NULL_WITHOUT_DEFAULT: Final = "add-not-null-without-default"
CREATE_INDEX_LOCKS_WRITES: Final = "create-index-locks-writes"
ADD_UNIQUE_CONSTRAINT: Final = "add-unique-constraint"
ADD_FOREIGN_KEY_VALIDATES: Final = "add-foreign-key-validates"
ADD_CHECK_CONSTRAINT: Final = "add-check-constraint"
PARSE_ERROR: Final = "parse-error"
NO_TRANSACTION_STATEMENT_IN_TRANSACTION: Final = "no-transaction-statement-in-transaction"
DROP_OBJECT: Final = "drop-object"
RENAME_OBJECT: Final = "rename-object"
ALWAYS_FAILS: Final = "always-fails"
PROCEDURAL: Final = "procedural-sql"
UNCOMMITTED_TRANSACTION: Final = "uncommitted-transaction"

_NO_UNDO: Final = "Back the data up or archive it first, and drop only once nothing reads it."


def _names(names: Sequence[str]) -> str:
    return ", ".join(names)


def drop_table(tables: Sequence[str]) -> Issue:
    return Issue(
        DROP_TABLE,
        "destructive",
        f"Drops table {_names(tables)} and every row in it; code still using it fails. {_NO_UNDO}",
    )


def drop_column(table: str, column: str) -> Issue:
    return Issue(
        DROP_COLUMN,
        "destructive",
        f"Drops column {table}.{column} and its data; code still reading or writing it fails. "
        "Stop using the column in a release first, then drop it in a later migration.",
    )


def drop_container(kind: Literal["schema", "database"], names: Sequence[str]) -> Issue:
    rule = DROP_SCHEMA if kind == "schema" else DROP_DATABASE
    return Issue(
        rule,
        "destructive",
        f"Drops {kind} {_names(names)} with all its tables and data. {_NO_UNDO}",
    )


def truncate(tables: Sequence[str]) -> Issue:
    return Issue(
        TRUNCATE,
        "destructive",
        f"Truncates {_names(tables)}, deleting every row. "
        "Delete only the rows you mean to with a WHERE clause, after a backup.",
    )


def delete_without_where(table: str) -> Issue:
    return Issue(
        DELETE_WITHOUT_WHERE,
        "destructive",
        f"Deletes every row of {table} (no WHERE clause). "
        "Add a WHERE clause naming the rows to delete, or use TRUNCATE deliberately.",
    )


def update_without_where(table: str) -> Issue:
    return Issue(
        UPDATE_WITHOUT_WHERE,
        "destructive",
        f"Overwrites the updated columns in every row of {table} (no WHERE clause). "
        "Add a WHERE clause naming the rows to change.",
    )


def drop_type(names: Sequence[str], cascade: bool) -> Issue:
    if cascade:
        return Issue(
            DROP_TYPE,
            "destructive",
            f"Drops type {_names(names)} with CASCADE, which also drops every column of that "
            "type and its data. Migrate the columns to another type first.",
        )
    return Issue(
        DROP_TYPE,
        "breaking",
        f"Drops type {_names(names)}; it fails while a column uses the type and breaks code "
        "that casts to it. Migrate the columns and the code away from the type first.",
    )


def rename_table(old: str, new: str) -> Issue:
    return Issue(
        RENAME_TABLE,
        "breaking",
        f"Renames table {old} to {new}; code still using the old name fails. "
        "Create the new table (or a view under the old name) and switch code over first.",
    )


def rename_column(table: str, old: str, new: str) -> Issue:
    return Issue(
        RENAME_COLUMN,
        "breaking",
        f"Renames column {table}.{old} to {new}; code still using the old name fails. "
        "Add the new column, write both, backfill, then drop the old one later.",
    )


_TYPE_CHANGE: Final[dict[Change, str]] = {
    "narrowing": "narrowing it: values that do not fit fail the migration or are cut off",
    "conversion": "converting every value, which fails on values that do not convert",
    "widening": "widening it, which still rewrites the table while blocking writes",
    "unknown": "which can rewrite the table while blocking writes and fail on values "
    "that do not fit",
    "same": "",
}


def alter_column_type(
    table: str, column: str, old: ColumnType | None, new: ColumnType, change: Change
) -> Issue:
    before = f"from {old} " if old is not None else ""
    return Issue(
        ALTER_COLUMN_TYPE,
        "breaking",
        f"Changes the type of {table}.{column} {before}to {new}, {_TYPE_CHANGE[change]}. "
        "Add a column of the new type, backfill it and switch code over instead.",
        table=table,
        lock_only=change == "widening",  # a rewrite that keeps every value: only lock time
    )


def enum_value_removal(table: str, column: str, removed: Sequence[str]) -> Issue:
    values = ", ".join(f"'{value}'" for value in removed)
    return Issue(
        ENUM_VALUE_REMOVAL,
        "destructive",
        f"Removes {values} from the allowed values of {table}.{column}; rows holding them "
        "make the migration fail or are blanked. Rewrite those rows first and keep the "
        "values until no code writes them.",
    )


def enum_value_rename(type_name: str, old: str, new: str) -> Issue:
    return Issue(
        ENUM_VALUE_REMOVAL,
        "breaking",
        f"Renames value '{old}' of enum {type_name} to '{new}'; code still writing "
        f"'{old}' fails. Add the new value, move rows and code over, then stop using the old.",
    )


def add_not_null_without_default(table: str, column: str) -> Issue:
    return Issue(
        ADD_NOT_NULL_WITHOUT_DEFAULT,
        "breaking",
        f"Adds NOT NULL column {table}.{column} without a DEFAULT: existing rows have no "
        "value for it and old code inserting without it fails. Add it with a DEFAULT, or "
        "nullable and backfill before making it NOT NULL.",
    )


def set_not_null(table: str, column: str, dialect: Dialect) -> Issue:
    if dialect == "postgresql":
        advice = (
            "Backfill first and add a CHECK (... IS NOT NULL) NOT VALID constraint, validate "
            "it, then set NOT NULL."
        )
    else:
        advice = "Backfill the NULL rows first and make sure no code still writes NULL."
    return Issue(
        ADD_NOT_NULL_WITHOUT_DEFAULT,
        "breaking",
        f"Makes {table}.{column} NOT NULL: it scans the table while blocking writes and fails "
        f"on any NULL row. {advice}",
    )


def create_index_locks_writes(table: str, dialect: Dialect, lock: str = "") -> Issue:
    if dialect == "postgresql":
        advice = (
            "Use CREATE INDEX CONCURRENTLY, in a file of its own: Lockstep runs a file of "
            "such statements without a transaction."
        )
        how = "without CONCURRENTLY"
    else:
        advice = "Leave out ALGORITHM=COPY and LOCK=SHARED/EXCLUSIVE (or use LOCK=NONE)."
        how = f"with {lock}"
    return Issue(
        CREATE_INDEX_LOCKS_WRITES,
        "breaking",
        f"Builds an index on {table} {how}, blocking writes to the table until the index is "
        f"built. {advice}",
        table=table,
        lock_only=True,
    )


def add_unique_constraint(
    table: str, what: str = "a unique constraint", columns: Sequence[str] = ()
) -> Issue:
    """``columns``: the key's plain columns, when known, so the live schema can look for
    duplicates (an expression or partial key has none)."""
    return Issue(
        ADD_UNIQUE_CONSTRAINT,
        "breaking",
        f"Adds {what} on {table}, which fails if existing rows hold duplicates and rejects "
        "writes old code may still make. Check for duplicates first and build the unique "
        "index concurrently before attaching it.",
        table=table,
        unique_columns=tuple(columns),
    )


def add_foreign_key_validates(table: str, dialect: Dialect) -> Issue:
    return Issue(
        ADD_FOREIGN_KEY_VALIDATES,
        "breaking",
        f"Adds a foreign key on {table} that checks every existing row while locking both "
        f"tables, and fails on orphan rows. {_validate_later(dialect)}",
    )


def add_check_constraint(table: str, dialect: Dialect) -> Issue:
    return Issue(
        ADD_CHECK_CONSTRAINT,
        "breaking",
        f"Adds a CHECK constraint on {table} that checks every existing row while blocking "
        f"writes, and fails on rows that violate it. {_validate_later(dialect)}",
    )


def _validate_later(dialect: Dialect) -> str:
    if dialect == "postgresql":
        return "Add it NOT VALID, then VALIDATE CONSTRAINT in a later migration."
    return "Clean up violating rows first and run it at a quiet time."


def parse_error(error: str) -> Issue:
    return Issue(
        PARSE_ERROR,
        "breaking",
        f"The SQL parser cannot read this statement ({error}), so it cannot be shown to be "
        "safe. Check the syntax, or review the statement by hand.",
    )


def opaque_statement(parser: str) -> Issue:
    return Issue(
        PARSE_ERROR,
        "breaking",
        f"{parser} reads this statement only as an opaque command, so it cannot be shown to "
        "be safe. Review the statement by hand.",
    )


def no_transaction_statement_in_transaction(kind: str) -> Issue:
    return Issue(
        NO_TRANSACTION_STATEMENT_IN_TRANSACTION,
        "breaking",
        f"{kind} cannot run inside a transaction, and this file would run in one (it holds "
        f"other statements too, or asks for a transaction): Lockstep refuses the file. Move "
        f"the statement to a file of its own (it then runs without a transaction), or put "
        f"'-- lockstep:transaction=false' on the file's first line.",
    )


def drop_object(kind: str, names: Sequence[str]) -> Issue:
    return Issue(
        DROP_OBJECT,
        "destructive",
        f"Drops {kind} {_names(names)}; code and objects still using it fail. "
        "Stop using it in a release first, then drop it in a later migration.",
    )


def rename_object(kind: str, old: str, new: str) -> Issue:
    return Issue(
        RENAME_OBJECT,
        "breaking",
        f"Renames {kind} {old} to {new}; code still using the old name fails. Create the new "
        "name beside the old one and switch code over first.",
    )


def always_fails(why: str) -> Issue:
    return Issue(
        ALWAYS_FAILS,
        "breaking",
        f"This statement always fails ({why}), so the migration cannot succeed. Fix it.",
    )


def procedural(what: str) -> Issue:
    return Issue(
        PROCEDURAL,
        "breaking",
        f"{what} runs code no parser can follow (a routine body, dynamic SQL), so the "
        "statement cannot be shown to be safe: a person must read it.",
    )


def uncommitted_transaction() -> Issue:
    return Issue(
        UNCOMMITTED_TRANSACTION,
        "breaking",
        "Opens a transaction the file never commits: its changes are rolled back when the "
        "session ends, or hold their locks until then. Leave transaction control to Lockstep.",
    )
