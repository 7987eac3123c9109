"""Who records in which version table: one DatabaseMigration per table, and the shared history
of an older Lockstep handed to the resource it belongs to.

Two DatabaseMigrations on one database used to share ``lockstep_schema_history``, so the second
read the first one's rows and failed with a checksum error about a file it never applied. Now
each keeps its own table (:func:`lockstep.tools.version_table.sql_history_name`), and a table
is *claimed*: :data:`OWNERS_TABLE`, in the connection's current schema (the *registry*, which
exists before a tool such as Flyway creates the schema of its own table), names the resource that
records there. A second resource pointed at the same table (the same ``spec.versionTable``, or
one tool's default table) is refused before anything runs, naming the first.
docs/adr/0012-one-history-per-resource.md records the decision.

Everything here runs under the database's migration lock, so two runs never claim or adopt at
the same time.
"""

from __future__ import annotations

import logging
from typing import Final, NoReturn

import sqlalchemy as sa

from lockstep import database, errors, version_tables
from lockstep.database import DatabaseIdentity
from lockstep.pod import run_session, sql_bookkeeping
from lockstep.sqlfiles import MigrationSet
from lockstep.tools import sql as sql_tool

log = logging.getLogger("lockstep.runner")

OWNERS_TABLE: Final = version_tables.OWNERS_TABLE
Claim = version_tables.Claim
owner_of = version_tables.owner_of


def claim(connection: sa.Connection, identity: DatabaseIdentity, url: str, wanted: Claim) -> None:
    """Record ``wanted``, or refuse when another resource records in that table already."""
    what = f"claim {wanted.schema}.{wanted.table} in {wanted.registry}.{OWNERS_TABLE}"
    with sql_bookkeeping.own_query(what, identity, url), connection.begin():
        first = version_tables.record_claim(connection, wanted)
    if first is not None and first != wanted.owner:
        refuse(first, wanted, identity)


def refuse(first: str, wanted: Claim, identity: DatabaseIdentity) -> NoReturn:
    """Raise :class:`~lockstep.errors.VersionTableInUse`: ``first`` records in that table."""
    schema, table = wanted.schema, wanted.table
    raise errors.VersionTableInUse(
        f"the migrations of {first} are recorded in {schema}.{table} on {identity} already: "
        f"two migration sets in one version table would read each other's history. Give the "
        f"migrations of {wanted.owner} a table of their own with spec.versionTable.name (for "
        f"tool {wanted.tool} also the tool's own setting, see docs/existing-databases.md), "
        f"or, if {first} no longer exists, release the table: DELETE FROM {wanted.registry}."
        f"{OWNERS_TABLE} WHERE table_schema = '{schema}' AND table_name = '{table}'"
    )


def claim_url(url: str, owner: str, tool: str, table: str, schema: str | None) -> str:
    """Claim ``table`` (in ``schema``, or the current one) for a tool in an image.

    In the `lockstep-claim` init container, once the lock sidecar holds the migration lock.
    A table that does not exist yet, on a database where nobody has claimed anything, is not
    claimed here: creating the registry would make the schema non-empty, and Flyway and Prisma
    refuse a first run on a non-empty schema without their history. The operator records the
    claim once that first run succeeded (:func:`lockstep.version_tables.claim_after_run`).
    Returns what happened, for the log.
    """
    identity = database.identity_from_url(url)
    engine = database.make_engine(url)
    try:
        with run_session.database_errors(identity, url), database.connect(engine, url) as conn:
            registry = sql_bookkeeping.current_schema(conn, identity, url)
            wanted = Claim(owner, tool, schema or registry, table, registry)
            with conn.begin():
                known = version_tables.has_table(conn, OWNERS_TABLE, registry)
                exists = version_tables.has_table(conn, table, wanted.schema)
            if not known and not exists:
                return f"{wanted.schema}.{table} does not exist yet: claimed after the first run"
            claim(conn, identity, url, wanted)
    finally:
        engine.dispose()
    return f"claimed {wanted.schema}.{table}"


def shared_history_to_adopt(
    connection: sa.Connection, registry: str, schema: str, table: str, migration_set: MigrationSet
) -> sa.Table | None:
    """The shared ``lockstep_schema_history`` of an older Lockstep, when it is this source's.

    Read-only. It is this resource's when the resource has no table of its own yet, nobody has
    claimed the shared table, and every row in it is one of this source's files with the
    checksum it has now: the rows of another resource's files never match all of them.
    """
    shared = sql_tool.HISTORY_TABLE
    if table == shared or version_tables.has_table(connection, table, schema):
        return None
    if not version_tables.has_table(connection, shared, schema):
        return None
    if owner_of(connection, registry, schema, shared) is not None:
        return None
    legacy = version_tables.sql_history_in(schema, shared)
    rows = sql_bookkeeping.read(connection, legacy)
    for row in rows:
        migration = migration_set.find(row.version)
        if migration is None or migration.up.checksum != row.checksum:
            return None
    return legacy if rows else None


def adopt_shared_history(
    connection: sa.Connection,
    identity: DatabaseIdentity,
    url: str,
    claimed: Claim,
    migration_set: MigrationSet,
) -> None:
    """Rename the shared history to the claimed table when it is this source's (see above)."""
    table = version_tables.sql_history_in(claimed.schema, claimed.table)
    with connection.begin():
        legacy = shared_history_to_adopt(
            connection, claimed.registry, claimed.schema, claimed.table, migration_set
        )
    if legacy is None:
        return
    preparer = connection.dialect.identifier_preparer
    old, new = preparer.format_table(legacy), preparer.quote(table.name)
    what = f"rename {legacy.fullname} to {table.fullname}"
    with sql_bookkeeping.own_query(what, identity, url), connection.begin():
        if identity.family == "mysql":
            connection.exec_driver_sql(f"RENAME TABLE {old} TO {preparer.format_table(table)}")
        else:
            connection.exec_driver_sql(f"ALTER TABLE {old} RENAME TO {new}")
    log.info("%s: took over %s as %s (one history per resource)", identity, old, table.fullname)
