"""Read what the classifier asked about the tables a plan touches: sizes, CHECKs, duplicates.

The classifier's first pass names its :class:`~lockstep.classify.findings.Questions`: the
existing tables its findings are about and the unique keys the plan adds.  This module asks
the database about those tables only, with bounded queries under a statement timeout:

* sizes from the catalogs (PostgreSQL ``pg_class.reltuples`` and
  ``pg_total_relation_size``; MySQL/MariaDB ``information_schema.TABLES``); when the bytes
  are below the threshold the rows are counted exactly, with ``LIMIT`` one past the row
  threshold, so the count never reads more than a small table;
* validated CHECK constraints per column (PostgreSQL ``pg_constraint``): a
  ``CHECK (col IS NOT NULL)`` lets ``SET NOT NULL`` skip its scan, and any CHECK on a column
  is re-read in full when the column's type changes;
* duplicates for each unique key, ``GROUP BY ... HAVING count(*) > 1 LIMIT 1``, only on a
  small table whose key columns all exist already; otherwise the key is "not checked".

Any failure leaves the fact out (the classifier then keeps its static verdict, which errs
on the side of asking).  Read-only.
"""

from __future__ import annotations

import functools
import logging
import os
import re
from collections.abc import Callable, Mapping
from typing import Final, TypeVar

import sqlalchemy as sa

from lockstep.classify import live
from lockstep.classify.findings import Questions, UniqueKey
from lockstep.classify.plan import Schema, table_key

log = logging.getLogger(__name__)
T = TypeVar("T")

STATEMENT_TIMEOUT_MS: Final = 5_000  # per query: a busy catalog must not stall the plan
_NOT_NULL_CHECK: Final = re.compile(r'^CHECK \(\(?"?(\w+)"? IS NOT NULL\)?\)$', re.IGNORECASE)
_PG_SIZES: Final = sa.text(
    "SELECT c.relname, c.reltuples::bigint, pg_total_relation_size(c.oid) FROM pg_class c"
    # Not 'p': a partitioned parent's own size is 0 bytes, which would pass any threshold.
    " WHERE c.relkind IN ('r', 'm') AND c.oid = to_regclass(:name)"
)
_PG_CHECKS: Final = sa.text(
    "SELECT con.conname, pg_get_constraintdef(con.oid), a.attname FROM pg_constraint con"
    " JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = ANY (con.conkey)"
    " WHERE con.contype = 'c' AND con.convalidated AND con.conrelid = to_regclass(:name)"
)
_MYSQL_SIZES: Final = sa.text(
    "SELECT table_name, table_rows, data_length + index_length FROM information_schema.tables"
    " WHERE table_schema = DATABASE() AND lower(table_name) = :name"
)


ROWS_ENV: Final = "LOCKSTEP_SMALL_TABLE_ROWS"
BYTES_ENV: Final = "LOCKSTEP_SMALL_TABLE_BYTES"


def thresholds_from_env(environ: Mapping[str, str] | None = None) -> live.Thresholds:
    """The small-table threshold: ``LOCKSTEP_SMALL_TABLE_ROWS`` / ``_BYTES`` when set to a
    whole number (0 turns the relaxation off), else 10,000 rows and 10 MB."""
    environ = os.environ if environ is None else environ
    default = live.Thresholds()

    def number(name: str, fallback: int) -> int:
        text = environ.get(name, "").strip()
        if not text.isdigit():
            if text:
                log.warning("%s=%r is not a whole number; using %d", name, text, fallback)
            return fallback
        return int(text)

    return live.Thresholds(number(ROWS_ENV, default.rows), number(BYTES_ENV, default.bytes))


def read(
    connection: sa.Connection,
    engine: str,
    questions: Questions,
    columns: Schema,
    thresholds: live.Thresholds | None = None,
) -> live.LiveFacts:
    """The facts about the tables ``questions`` names (empty on SQLite or on failure)."""
    thresholds = thresholds or live.Thresholds()
    if engine == "sqlite" or not questions:
        return live.LiveFacts(thresholds=thresholds)
    _set_timeout(connection, engine)
    sizes: dict[str, live.TableSize] = {}
    not_null: set[tuple[str, str]] = set()
    checks: dict[tuple[str, str], tuple[str, ...]] = {}
    for table in sorted(questions.tables | {key[0] for key in questions.unique_keys}):
        size = _guarded(connection, functools.partial(_size, connection, engine, table, thresholds))
        if size is not None:
            sizes[table] = size
        if engine == "postgresql":
            rows = _guarded(connection, functools.partial(_pg_checks, connection, table))
            for name, definition, column in rows or ():
                key = (table, str(column).lower())
                checks[key] = (*checks.get(key, ()), str(name))
                if _NOT_NULL_CHECK.match(str(definition)):
                    not_null.add(key)
    duplicates = {
        key: found
        for key in sorted(questions.unique_keys)
        if (found := _duplicates(connection, key, sizes, columns, thresholds)) is not None
    }
    return live.LiveFacts(sizes, duplicates, frozenset(not_null), checks, thresholds)


def _set_timeout(connection: sa.Connection, engine: str) -> None:
    statement = (
        f"SET LOCAL statement_timeout = {STATEMENT_TIMEOUT_MS}"
        if engine == "postgresql"
        else f"SET SESSION max_statement_time = {STATEMENT_TIMEOUT_MS / 1000}"
    )
    _guarded(connection, lambda: connection.execute(sa.text(statement)))


def _pg_checks(connection: sa.Connection, table: str) -> list[tuple[str, str, str]]:
    rows = connection.execute(_PG_CHECKS, {"name": table}).all()
    return [(str(row[0]), str(row[1]), str(row[2])) for row in rows]


def _size(
    connection: sa.Connection, engine: str, table: str, thresholds: live.Thresholds
) -> live.TableSize | None:
    query = _PG_SIZES if engine == "postgresql" else _MYSQL_SIZES
    row = connection.execute(query, {"name": table}).first()
    if row is None:
        return None
    estimate, total = int(row[1] if row[1] is not None else -1), int(row[2] or 0)
    if total >= thresholds.bytes:
        return live.TableSize(estimate, total)
    quoted = _quote(connection, str(row[0]))  # the catalog's spelling of the name
    bounded = f"SELECT count(*) FROM (SELECT 1 FROM {quoted} LIMIT {thresholds.rows + 1}) AS t"
    counted = int(connection.execute(sa.text(bounded)).scalar_one())
    # Past the bound the count stopped early: the catalog's estimate says more, when larger.
    return live.TableSize(counted if counted <= thresholds.rows else max(counted, estimate), total)


def _duplicates(
    connection: sa.Connection,
    key: UniqueKey,
    sizes: Mapping[str, live.TableSize],
    columns: Schema,
    thresholds: live.Thresholds,
) -> bool | None:
    table, names = key
    size = sizes.get(table)
    known = {table_key(name): cols for name, cols in columns.items()}.get(table, {})
    if size is None or not size.small(thresholds) or not all(name in known for name in names):
        return None  # too large to check cheaply, or a column the plan itself adds
    quoted = [_quote(connection, name) for name in names]
    query = (
        f"SELECT 1 FROM {_quote(connection, table)} WHERE "
        + " AND ".join(f"{name} IS NOT NULL" for name in quoted)
        + f" GROUP BY {', '.join(quoted)} HAVING count(*) > 1 LIMIT 1"
    )
    return _guarded(connection, lambda: connection.execute(sa.text(query)).first() is not None)


def _guarded(connection: sa.Connection, read: Callable[[], T]) -> T | None:
    """``read()`` in a savepoint, or None (logged) when the database refuses: the fact is
    left out, and the failed statement does not abort the reads after it."""
    try:
        with connection.begin_nested():
            return read()
    except sa.exc.SQLAlchemyError as error:
        log.info("live fact not read (%s)", error)
        return None


def _quote(connection: sa.Connection, name: str) -> str:
    return str(connection.dialect.identifier_preparer.quote(name))
