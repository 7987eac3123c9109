"""Read the revision a database is at from each migration tool's own version table (I/O).

The adapters in :mod:`lockstep.tools` are pure: they know each table's name and how the
tool's revisions are spelt and ordered. This module is the one place that reads those tables,
through SQLAlchemy; it also defines the history table of the ``sql`` tool, which Lockstep's
runner writes. Every reader returns None when its table is missing or holds no applied
migration.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import sqlalchemy as sa

from lockstep import database, sqlfiles, tools
from lockstep.tools import alembic, django, flyway, knex, prisma, sequelize, sql
from lockstep.tools.version_table import VersionTableRef

Reader = Callable[[sa.Connection, VersionTableRef], str | None]
# A version read is one small query: a server that does not answer within this is down.
READ_TIMEOUT_SECONDS: Final = 30

metadata = sa.MetaData()
# The `sql` tool's history, written by Lockstep's runner. VARCHAR rather than TEXT: MySQL
# cannot index TEXT without a prefix length.
sql_history = sa.Table(
    sql.HISTORY_TABLE,
    metadata,
    sa.Column("version", sa.String(sqlfiles.MAX_VERSION_LENGTH), primary_key=True),
    sa.Column("description", sa.String(200), nullable=False),
    sa.Column("checksum", sa.String(64), nullable=False),
    sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("execution_ms", sa.Integer, nullable=False),
    sa.Column("success", sa.Boolean, nullable=False),
    # Set while a file runs statement by statement (MySQL/MariaDB, or a file that runs without
    # a transaction): which file, and how many of its statements have completed. A row left
    # with success false and these set is a file that failed or was interrupted part-way.
    sa.Column("running_file", sa.String(255), nullable=True),
    sa.Column("statements_done", sa.Integer, nullable=True),
    # True on a row spec.baseline recorded: the file was adopted as already applied, not run.
    sa.Column("baselined", sa.Boolean, nullable=True),
)
# Columns an older Lockstep's table may lack: added on the next run, read as None until then.
PROGRESS_COLUMNS: Final = ("running_file", "statements_done")
ADDED_COLUMNS: Final = (*PROGRESS_COLUMNS, "baselined")


@functools.cache
def sql_history_in(schema: str, name: str = sql.HISTORY_TABLE) -> sa.Table:
    """The history table ``name`` qualified with ``schema``, so a migration's ``SET search_path``
    or ``USE`` cannot send Lockstep's own queries to another schema's table."""
    return sql_history.to_metadata(sa.MetaData(), schema=schema, name=name)


# Who records in which version table (docs/adr/0012-one-history-per-resource.md): one row per
# table, in the connection's current schema (the registry).
OWNERS_TABLE: Final = "lockstep_version_table_owners"
_owners = sa.Table(
    OWNERS_TABLE,
    sa.MetaData(),
    sa.Column("table_schema", sa.String(64), primary_key=True),
    sa.Column("table_name", sa.String(64), primary_key=True),
    sa.Column("owner", sa.String(320), nullable=False),
    sa.Column("tool", sa.String(16), nullable=False),
    sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
)


@dataclass(frozen=True)
class Claim:
    """The resource ``owner`` ("namespace/name") records with ``tool`` in ``schema.table``;
    ``registry`` is the schema of the owners table (the connection's current schema)."""

    owner: str
    tool: str
    schema: str
    table: str
    registry: str


def _owners_in(registry: str) -> sa.Table:
    return _owners.to_metadata(sa.MetaData(), schema=registry)


def owner_of(connection: sa.Connection, registry: str, schema: str, table: str) -> str | None:
    """The resource that claimed ``schema.table``; None when nobody has (read-only)."""
    if not has_table(connection, OWNERS_TABLE, registry):
        return None
    owners = _owners_in(registry)
    query = sa.select(owners.c.owner).where(
        owners.c.table_schema == schema, owners.c.table_name == table
    )
    found = connection.execute(query).scalar()
    return str(found) if found is not None else None


def record_claim(connection: sa.Connection, wanted: Claim) -> str | None:
    """Claim ``wanted`` unless claimed; the owner that claimed it before, or None (in the
    caller's transaction, under the migration lock or after the run)."""
    owners = _owners_in(wanted.registry)
    owners.metadata.create_all(connection, checkfirst=True)
    first = owner_of(connection, wanted.registry, wanted.schema, wanted.table)
    if first is None:
        row = {
            "table_schema": wanted.schema,
            "table_name": wanted.table,
            "owner": wanted.owner,
            "tool": wanted.tool,
            "claimed_at": datetime.now(UTC),
        }
        connection.execute(owners.insert().values(**row))
    return first


def claim_after_run(url: str, owner: str, tool: str, table: VersionTableRef) -> str | None:
    """The operator's claim after a tool in an image ran for the first time (see
    :func:`lockstep.pod.history_owners.claim_url`); the earlier owner, or None."""
    engine = database.make_engine(url, query_timeout_seconds=READ_TIMEOUT_SECONDS)
    try:
        with engine.connect() as connection, connection.begin():
            registry = _current_schema(connection)
            wanted = Claim(owner, tool, table.schema or registry, table.name, registry)
            return record_claim(connection, wanted)
    finally:
        engine.dispose()


def _current_schema(connection: sa.Connection) -> str:
    dialect = connection.dialect.name
    if dialect == "sqlite":
        return "main"
    query = "SELECT current_schema()" if dialect == "postgresql" else "SELECT DATABASE()"
    return str(connection.exec_driver_sql(query).scalar())


# Each tool's table by its columns; named (and qualified) per resource by _table().
_COLUMNS: Final[Mapping[str, tuple[tuple[str, type[sa.types.TypeEngine[Any]] | None], ...]]] = {
    "sql": (("version", sa.String), ("success", sa.Boolean)),
    "alembic": (("version_num", sa.String),),
    "django": (("id", sa.Integer), ("app", sa.String), ("name", sa.String)),
    "flyway": (
        ("installed_rank", sa.Integer),
        ("version", sa.String),
        ("type", sa.String),
        ("success", sa.Boolean),
    ),
    "knex": (("id", sa.Integer), ("name", sa.String)),
    # Untyped times: compared and sorted by the database only, whatever the engine stores.
    "prisma": (("migration_name", sa.String), ("finished_at", None), ("rolled_back_at", None)),
    "sequelize": (("name", sa.String),),
}


def _table(tool: str, ref: VersionTableRef) -> sa.TableClause:
    columns = (sa.column(name, kind) if kind else sa.column(name) for name, kind in _COLUMNS[tool])
    return sa.table(ref.name, *columns, schema=ref.schema)


def read_revision(
    tool: str, url: str, table: VersionTableRef | None = None, fallback: str | None = None
) -> str | None:
    """The applied revision, or None when the tool's table is missing or empty.

    ``table`` is where the resource's tool records (None: the tool's default table);
    ``fallback`` a table read instead while that one does not exist yet (tool sql's shared
    history from before one history per resource: docs/adr/0012-one-history-per-resource.md).
    """
    engine = database.make_engine(url, query_timeout_seconds=READ_TIMEOUT_SECONDS)
    try:
        with engine.connect() as connection:
            ref = table or VersionTableRef(tools.get_adapter(tool).version_table)
            if fallback and not has_table(connection, ref.name, ref.schema):
                ref = VersionTableRef(fallback, ref.schema)
            return read_applied_revision(tool, connection, ref)
    finally:
        engine.dispose()


def read_applied_revision(
    tool: str, connection: sa.Connection, table: VersionTableRef | None = None
) -> str | None:
    """The revision the database is at by ``tool``'s version table, on an open connection.

    Raises :class:`lockstep.errors.UnknownTool` (naming the known tools) for any other tool.
    """
    adapter = tools.get_adapter(tool)
    ref = table or VersionTableRef(adapter.version_table)
    if not has_table(connection, ref.name, ref.schema):
        return None
    return _READERS[adapter.name](connection, ref)


def has_table(connection: sa.Connection, table: str, schema: str | None = None) -> bool:
    """Whether ``table`` exists in ``schema`` (None: the connection's default schema)."""
    return sa.inspect(connection).has_table(table, schema=schema)


def _sql(connection: sa.Connection, ref: VersionTableRef) -> str | None:
    """The newest successfully applied version (a failed one is not "applied")."""
    history = _table("sql", ref)
    query = sa.select(history.c.version).where(history.c.success == sa.true())
    return sql.newest_version(list(connection.execute(query).scalars()))


def _alembic(connection: sa.Connection, ref: VersionTableRef) -> str | None:
    """The current revision; several heads (branches) are joined with commas, sorted."""
    table = _table("alembic", ref)
    heads = sorted(connection.execute(sa.select(table.c.version_num)).scalars())
    return ",".join(heads) or None


def _django(connection: sa.Connection, ref: VersionTableRef) -> str | None:
    """Each app's newest applied migration (highest ``id``), as :func:`django.format_revision`."""
    migrations = _table("django", ref)
    newest = (
        sa.select(migrations.c.app, sa.func.max(migrations.c.id).label("id"))
        .group_by(migrations.c.app)
        .subquery()
    )
    query = sa.select(migrations.c.app, migrations.c.name).join(
        newest, sa.and_(migrations.c.app == newest.c.app, migrations.c.id == newest.c.id)
    )
    return django.format_revision({str(app): str(name) for app, name in connection.execute(query)})


def _flyway(connection: sa.Connection, ref: VersionTableRef) -> str | None:
    """The version the history leaves the schema at (see :func:`flyway.current_version`)."""
    history = _table("flyway", ref)
    query = sa.select(
        history.c.installed_rank, history.c.version, history.c.type, history.c.success
    )
    rows = (
        flyway.HistoryRow(int(rank), version, str(kind), bool(success))
        for rank, version, kind, success in connection.execute(query)
    )
    return flyway.current_version(rows)


def _knex(connection: sa.Connection, ref: VersionTableRef) -> str | None:
    """The newest row by ``id``: the last migration run."""
    migrations = _table("knex", ref)
    query = sa.select(migrations.c.name).order_by(migrations.c.id.desc()).limit(1)
    name = connection.execute(query).scalar()
    return str(name) if name is not None else None


def _prisma(connection: sa.Connection, ref: VersionTableRef) -> str | None:
    """The newest migration that finished and was not rolled back."""
    migrations = _table("prisma", ref)
    query = (
        sa.select(migrations.c.migration_name)
        .where(migrations.c.finished_at.is_not(None), migrations.c.rolled_back_at.is_(None))
        # Finish time first; the (timestamp-prefixed) name breaks ties within a clock tick.
        .order_by(migrations.c.finished_at.desc(), migrations.c.migration_name.desc())
        .limit(1)
    )
    name = connection.execute(query).scalar()
    return str(name) if name is not None else None


def _sequelize(connection: sa.Connection, ref: VersionTableRef) -> str | None:
    """The greatest name: sequelize-cli applies migrations in file-name order."""
    # Compared in Python: a database collation may not order names byte-wise
    # the way sequelize-cli sorts the files.
    names = connection.execute(sa.select(_table("sequelize", ref).c.name)).scalars()
    return max((str(n) for n in names), default=None)


_READERS: Final[Mapping[str, Reader]] = {
    sql.SqlAdapter.name: _sql,
    alembic.AlembicAdapter.name: _alembic,
    django.DjangoAdapter.name: _django,
    flyway.FlywayAdapter.name: _flyway,
    knex.KnexAdapter.name: _knex,
    prisma.PrismaAdapter.name: _prisma,
    sequelize.SequelizeAdapter.name: _sequelize,
}
