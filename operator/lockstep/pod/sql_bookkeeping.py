"""Lockstep's own queries on its history table, each named when it fails.

The table is always qualified with the schema the run started in (PostgreSQL's
``current_schema()``, MySQL's ``DATABASE()``, SQLite's ``main``): a migration file's
``SET search_path`` or ``USE`` must not send Lockstep's bookkeeping elsewhere. A failure of one
of these queries says which query failed, and whether the connection was lost (a retry may
help) or the query was refused (a retry will not).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy import exc

from lockstep import version_tables
from lockstep.database import DatabaseIdentity
from lockstep.pod import run_session, sql_errors, sql_messages, sql_rows

HistoryRow = sql_rows.HistoryRow


def current_schema(connection: sa.Connection, identity: DatabaseIdentity, url: str) -> str:
    """The schema the run starts in: where Lockstep's history table lives."""
    if identity.family == "sqlite":
        return "main"
    query = "SELECT current_schema()" if identity.family == "postgresql" else "SELECT DATABASE()"
    with own_query(f"read the current schema ({query})", identity, url), connection.begin():
        schema = connection.exec_driver_sql(query).scalar()
    if not schema:
        raise sql_messages.no_current_schema(identity, query)
    return str(schema)


@contextlib.contextmanager
def own_query(what: str, identity: DatabaseIdentity, url: str) -> Iterator[None]:
    """Name the Lockstep query that failed, and say whether running again can help."""
    try:
        yield
    except exc.DBAPIError as error:
        detail = run_session.db_error_text(error, url)
        lost = sql_errors.connection_lost(error)
        raise sql_messages.own_query_failed(what, identity, detail, lost) from None


def ensure_table(
    connection: sa.Connection, table: sa.Table, identity: DatabaseIdentity, url: str
) -> None:
    """Create the history table, or add the columns an older Lockstep did not have."""
    what = f"create {table.fullname} if it is missing"
    with own_query(what, identity, url), connection.begin():
        table.metadata.create_all(connection, checkfirst=True)
        inspector = sa.inspect(connection)
        present = {c["name"] for c in inspector.get_columns(table.name, table.schema)}
        quoted = connection.dialect.identifier_preparer.format_table(table)
        for name in version_tables.ADDED_COLUMNS:
            if name not in present:
                kind = table.c[name].type.compile(dialect=connection.dialect)
                connection.exec_driver_sql(f"ALTER TABLE {quoted} ADD COLUMN {name} {kind}")


def read(connection: sa.Connection, table: sa.Table) -> list[HistoryRow]:
    """Every row; the progress columns read as None on a table that lacks them (read-only)."""
    present = {c["name"] for c in sa.inspect(connection).get_columns(table.name, table.schema)}
    progress = [table.c[name] for name in version_tables.ADDED_COLUMNS if name in present]
    query = sa.select(
        table.c.version,
        table.c.description,
        table.c.checksum,
        table.c.success,
        table.c.applied_at,
        *progress,
    )
    rows = []
    for row in connection.execute(query).mappings():
        done = row.get("statements_done")
        rows.append(
            HistoryRow(
                row["version"],
                row["description"],
                row["checksum"],
                bool(row["success"]),
                row["applied_at"],
                row.get("running_file"),
                int(done) if done is not None else None,
                bool(row.get("baselined")),
            )
        )
    return rows


def now() -> datetime:
    return datetime.now(UTC)
