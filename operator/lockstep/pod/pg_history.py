"""The history table of tool sql on PostgreSQL, read and prepared by the fast path (psycopg).

What :func:`lockstep.pod.sql_history.open_history` does through SQLAlchemy for a run that needs
no baseline: find the run's schema, claim the table for its DatabaseMigration, create the table,
read its rows. The table and the owners registry are created with the DDL SQLAlchemy emits for
:data:`lockstep.version_tables.sql_history` (a unit test compares them). Situations the fast path
leaves to the SQLAlchemy path are reported as :class:`NeedsFullPath` *before anything is
written* that the full path would not write the same way: another resource's claim (refused
there, with its message), an older Lockstep's shared history to take over, a table of an older
Lockstep without the progress columns, a name that needs quoting.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from lockstep import sqlfiles
from lockstep.db_identity import DatabaseIdentity
from lockstep.pod import pg_direct, run_request, sql_messages, sql_rows
from lockstep.tools import sql as sql_tool

if TYPE_CHECKING:
    import psycopg

OWNERS_TABLE: Final = "lockstep_version_table_owners"
HISTORY_COLUMNS: Final = (
    "version",
    "description",
    "checksum",
    "applied_at",
    "execution_ms",
    "success",
    "running_file",
    "statements_done",
    "baselined",
)
HISTORY_DDL: Final = (
    "CREATE TABLE IF NOT EXISTS {table} (\n"
    f"\tversion VARCHAR({sqlfiles.MAX_VERSION_LENGTH}) NOT NULL, \n"
    "\tdescription VARCHAR(200) NOT NULL, \n"
    "\tchecksum VARCHAR(64) NOT NULL, \n"
    "\tapplied_at TIMESTAMP WITH TIME ZONE NOT NULL, \n"
    "\texecution_ms INTEGER NOT NULL, \n"
    "\tsuccess BOOLEAN NOT NULL, \n"
    "\trunning_file VARCHAR(255), \n"
    "\tstatements_done INTEGER, \n"
    "\tbaselined BOOLEAN, \n"
    "\tPRIMARY KEY (version)\n"
    ")"
)
OWNERS_DDL: Final = (
    "CREATE TABLE IF NOT EXISTS {table} (\n"
    "\ttable_schema VARCHAR(64) NOT NULL, \n"
    "\ttable_name VARCHAR(64) NOT NULL, \n"
    "\towner VARCHAR(320) NOT NULL, \n"
    "\ttool VARCHAR(16) NOT NULL, \n"
    "\tclaimed_at TIMESTAMP WITH TIME ZONE NOT NULL, \n"
    "\tPRIMARY KEY (table_schema, table_name)\n"
    ")"
)
# One round trip: the schema, whether the names need quoting, which tables exist (with columns).
_LOOK: Final = (
    "SELECT current_schema(), quote_ident(%(table)s), quote_ident(coalesce(%(schema)s, '')), "
    "(SELECT array_agg(c.relname || ':' || ("
    "  SELECT count(*) FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0"
    "  AND NOT a.attisdropped AND a.attname IN ('running_file', 'statements_done', 'baselined')"
    ")) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    " WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') "
    " AND ((n.nspname = coalesce(%(schema)s, current_schema()) AND c.relname IN "
    "   (%(table)s, %(shared)s)) OR (n.nspname = current_schema() AND c.relname = %(owners)s)))"
)


class NeedsFullPath(Exception):  # noqa: N818 - a signal to the caller, not a failure
    """The run needs the SQLAlchemy path; nothing was written that it would not write."""


@dataclass(frozen=True)
class History:
    table: str  # schema-qualified and quoted, for Lockstep's own statements
    shown: str  # as a repair statement in a message names it (as sql_history.shown_name)
    rows: list[sql_rows.HistoryRow]


def open_history(
    connection: psycopg.Connection[Any], identity: DatabaseIdentity, request: run_request.RunRequest
) -> History:
    """Claim, create and read the history (under the migration lock), or :class:`NeedsFullPath`.
    A failed query is named as the SQLAlchemy path names it (pg_direct.own_query)."""
    from psycopg import sql

    url = request.database_url
    name = request.version_table or sql_tool.HISTORY_TABLE
    with pg_direct.own_query("read the current schema (SELECT current_schema())", identity, url):
        looked = connection.execute(
            _LOOK,
            {
                "table": name,
                "schema": request.version_table_schema,
                "shared": sql_tool.HISTORY_TABLE,
                "owners": OWNERS_TABLE,
            },
        ).fetchone()
    assert looked is not None
    current, quoted_name, quoted_schema, found = looked
    if not current:
        raise sql_messages.no_current_schema(identity, "SELECT current_schema()")
    schema = request.version_table_schema or str(current)
    if quoted_name != name or (request.version_table_schema and quoted_schema != schema):
        raise NeedsFullPath(f"the name {name!r} or its schema needs quoting")
    tables = dict(entry.rsplit(":", 1) for entry in (found or []))
    if name in tables and tables[name] != "3":
        raise NeedsFullPath(f"{name} lacks columns a newer Lockstep added")
    shared = sql_tool.HISTORY_TABLE
    if request.owner and name not in tables and name != shared and shared in tables:
        raise NeedsFullPath("an older Lockstep's shared history may be this resource's")
    table = sql.Identifier(schema, name).as_string(connection)
    if request.owner:
        what = f"claim {schema}.{name} in {current}.{OWNERS_TABLE}"
        with pg_direct.own_query(what, identity, url):
            _claim(connection, request.owner, str(current), schema, name, OWNERS_TABLE in tables)
    if name not in tables:
        with pg_direct.own_query(f"create {schema}.{name} if it is missing", identity, url):
            connection.execute(HISTORY_DDL.format(table=table))
    shown = f"{schema}.{name}" if request.version_table_schema else name
    with pg_direct.own_query(f"read {shown}", identity, url):
        rows = connection.execute(f"SELECT {', '.join(HISTORY_COLUMNS)} FROM {table}").fetchall()
    return History(table, shown, [_row(row) for row in rows])


def _claim(
    connection: psycopg.Connection[Any],
    owner: str,
    registry: str,
    schema: str,
    name: str,
    registry_exists: bool,
) -> None:
    """As version_tables.record_claim; another owner's claim is the full path's to refuse."""
    from psycopg import sql

    owners = sql.Identifier(registry, OWNERS_TABLE).as_string(connection)
    if not registry_exists:
        connection.execute(OWNERS_DDL.format(table=owners))
    found = connection.execute(
        f"SELECT owner FROM {owners} WHERE table_schema = %s AND table_name = %s",
        [schema, name],
    ).fetchone()
    if found is not None:
        if found[0] != owner:
            raise NeedsFullPath("another resource claimed the table")
        return
    connection.execute(
        f"INSERT INTO {owners} (table_schema, table_name, owner, tool, claimed_at) "
        "VALUES (%s, %s, %s, 'sql', now())",
        [schema, name, owner],
    )


def _row(row: tuple[Any, ...]) -> sql_rows.HistoryRow:
    version, description, checksum, _applied, _ms, success, running, done, baselined = row
    return sql_rows.HistoryRow(
        version,
        description,
        checksum,
        bool(success),
        _applied,
        running,
        int(done) if done is not None else None,
        bool(baselined),
    )
