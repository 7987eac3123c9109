"""Which history a run of SQL files reads and writes, made ready before planning.

The run (:func:`open_history`, under the migration lock) claims the resource's table, takes over
the shared history of an older Lockstep when it is this source's, creates the table, and records
a baseline; the plan and the rehearsal (:func:`preview_history`, read-only, no lock) read what
the run would find, so that what they show is what the run then does.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from lockstep import version_tables
from lockstep.database import DatabaseIdentity
from lockstep.pod import history_owners, run_request, sql_baseline, sql_bookkeeping
from lockstep.sqlfiles import MigrationSet
from lockstep.tools import sql as sql_tool

log = logging.getLogger("lockstep.runner")


@dataclass(frozen=True)
class History:
    table: sa.Table
    rows: Sequence[sql_bookkeeping.HistoryRow]  # as the plan must see them (baseline included)
    baselined: tuple[str, ...]  # versions this run records as baselined (not run)
    shown: str  # the table as a person types it in a repair statement


def shown_name(connection: sa.Connection, table: sa.Table, request: run_request.RunRequest) -> str:
    """The table as SQL names it, schema-qualified only when spec.versionTable.schema is set.

    Quoted where the name needs it (``"ShopHistory"`` on PostgreSQL), so a repair statement
    copied from a message hits this table.
    """
    preparer = connection.dialect.identifier_preparer
    name = preparer.quote(table.name)
    if request.version_table_schema:
        return f"{preparer.quote_schema(str(table.schema))}.{name}"
    return name


def history_table(
    connection: sa.Connection, identity: DatabaseIdentity, request: run_request.RunRequest
) -> tuple[sa.Table, str]:
    """The resource's history table, qualified with its schema (the current one by default),
    and the current schema (where the owners registry lives)."""
    current = sql_bookkeeping.current_schema(connection, identity, request.database_url)
    schema = request.version_table_schema or current
    name = request.version_table or sql_tool.HISTORY_TABLE
    return version_tables.sql_history_in(schema, name), current


def open_history(
    connection: sa.Connection,
    identity: DatabaseIdentity,
    request: run_request.RunRequest,
    migration_set: MigrationSet,
    target: str | None,
) -> History:
    """Claim, take over, create, read and baseline the history (writes; under the lock)."""
    url = request.database_url
    table, current = history_table(connection, identity, request)
    if request.owner:
        claim = history_owners.Claim(
            request.owner, request.tool, str(table.schema), table.name, current
        )
        history_owners.claim(connection, identity, url, claim)
        history_owners.adopt_shared_history(connection, identity, url, claim, migration_set)
    sql_bookkeeping.ensure_table(connection, table, identity, url)
    shown = shown_name(connection, table, request)
    with sql_bookkeeping.own_query(f"read {shown}", identity, url), connection.begin():
        rows = sql_bookkeeping.read(connection, table)
    adopted = sql_baseline.plan_baseline(
        migration_set, rows, request.baseline, target, identity=identity, table=shown
    )
    if not adopted:
        return History(table, rows, (), shown)
    baselined = sql_baseline.baselined_rows(adopted, sql_bookkeeping.now())
    what = f"baseline {shown}"
    with sql_bookkeeping.own_query(what, identity, url), connection.begin():
        sql_baseline.record(connection, table, baselined)
    log.info("%s: baselined %d file(s) up to %s", identity, len(baselined), request.baseline)
    return History(table, [*rows, *baselined], tuple(m.version for m in adopted), shown)


def preview_history(
    connection: sa.Connection,
    identity: DatabaseIdentity,
    request: run_request.RunRequest,
    migration_set: MigrationSet,
    target: str | None,
) -> History:
    """What :func:`open_history` would find, without writing anything; refuses as it would."""
    table, current = history_table(connection, identity, request)
    schema = str(table.schema)
    with connection.begin():
        first = history_owners.owner_of(connection, current, schema, table.name)
        if request.owner and first not in (None, request.owner):
            claim = history_owners.Claim(request.owner, request.tool, schema, table.name, current)
            history_owners.refuse(first, claim, identity)
        shared = history_owners.shared_history_to_adopt(
            connection, current, schema, table.name, migration_set
        )
        read_from = shared if shared is not None and request.owner else table
        exists = version_tables.has_table(connection, read_from.name, schema)
        rows = sql_bookkeeping.read(connection, read_from) if exists else []
    shown = shown_name(connection, table, request)
    adopted = sql_baseline.plan_baseline(
        migration_set, rows, request.baseline, target, identity=identity, table=shown
    )
    baselined = sql_baseline.baselined_rows(adopted, sql_bookkeeping.now())
    return History(table, [*rows, *baselined], tuple(m.version for m in adopted), shown)
