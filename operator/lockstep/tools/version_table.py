"""Which table a DatabaseMigration's tool records its migrations in, and how the tool is told.

Pure. One answer, used by the runner, the drift check and the revision readers alike:

* ``spec.versionTable`` set: that name and schema (a missing name keeps the tool's own).
* tool ``sql`` without a name: a history table of the resource's own, named from its namespace
  and name (:func:`sql_history_name`), so two DatabaseMigrations on one database never read
  each other's history (docs/adr/0012-one-history-per-resource.md).
* any other tool: the tool's default table (``flyway_schema_history``, ``alembic_version``...).

A tool in the user's image is told through its environment: Flyway reads ``FLYWAY_TABLE`` and
``FLYWAY_DEFAULT_SCHEMA`` by itself; every tool also gets ``LOCKSTEP_VERSION_TABLE`` and
``LOCKSTEP_VERSION_TABLE_SCHEMA`` for its config file to pass on (Alembic's env.py, a knexfile,
a .sequelizerc). Prisma and Django have a fixed table name; only its schema can move.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any, Final

from lockstep.model import Spec, VersionTable
from lockstep.tools import alembic, django, flyway, knex, prisma, sequelize, sql

TABLE_ENV: Final = "LOCKSTEP_VERSION_TABLE"
SCHEMA_ENV: Final = "LOCKSTEP_VERSION_TABLE_SCHEMA"
# The tools' own variables, where a tool reads one.
_NATIVE_ENV: Final[dict[str, tuple[str | None, str | None]]] = {
    flyway.FlywayAdapter.name: ("FLYWAY_TABLE", "FLYWAY_DEFAULT_SCHEMA"),
}
_DEFAULT_TABLES: Final = {
    sql.SqlAdapter.name: sql.HISTORY_TABLE,
    alembic.AlembicAdapter.name: alembic.VERSION_TABLE,
    django.DjangoAdapter.name: django.VERSION_TABLE,
    flyway.FlywayAdapter.name: flyway.VERSION_TABLE,
    knex.KnexAdapter.name: knex.VERSION_TABLE,
    prisma.PrismaAdapter.name: prisma.VERSION_TABLE,
    sequelize.SequelizeAdapter.name: sequelize.VERSION_TABLE,
}
# Tools whose table name cannot be changed (only the schema that holds it).
FIXED_NAME_TOOLS: Final = frozenset({prisma.PrismaAdapter.name, django.DjangoAdapter.name})
_HASH_CHARS: Final = 8
_NAME_CHARS: Final = 40  # lockstep_ + 40 + _ + 8 hex = 58, below PostgreSQL's 63


@dataclass(frozen=True)
class VersionTableRef:
    """A table and the schema that holds it (None: the connection's current schema)."""

    name: str
    schema: str | None = None

    def shown(self) -> str:
        return f"{self.schema}.{self.name}" if self.schema else self.name


def sql_history_name(owner: str) -> str:
    """Tool sql's history table for the DatabaseMigration ``owner`` ("namespace/name").

    Readable (``lockstep_orders_1a2b3c4d``) and unique per resource: the hash covers the
    namespace and the full name, which the readable part shortens and flattens ('-', '.').
    No owner (a hand-run ``lockstep run``): the table Lockstep has always used.
    """
    if not owner:
        return sql.HISTORY_TABLE
    name = owner.rpartition("/")[2]
    readable = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")[:_NAME_CHARS].rstrip("_")
    digest = hashlib.sha256(owner.encode()).hexdigest()[:_HASH_CHARS]
    return f"lockstep_{readable}_{digest}" if readable else f"lockstep_{digest}"


def resolve(tool: str, configured: VersionTable, owner: str) -> VersionTableRef:
    """The table ``tool`` records in for a resource with ``spec.versionTable`` = ``configured``."""
    if configured.name:
        name = configured.name
    elif tool == sql.SqlAdapter.name:
        name = sql_history_name(owner)
    else:
        name = _DEFAULT_TABLES[tool]
    return VersionTableRef(name, configured.schema)


def is_default(tool: str, configured: VersionTable) -> bool:
    """True when spec.versionTable leaves the tool's default table (and schema) in place."""
    return configured.name is None and configured.schema is None and tool != sql.SqlAdapter.name


def tool_env(tool: str, configured: VersionTable) -> list[dict[str, Any]]:
    """Environment that tells a tool in the user's image where its version table is."""
    if configured.name is None and configured.schema is None:
        return []
    native_table, native_schema = _NATIVE_ENV.get(tool, (None, None))
    env: list[dict[str, Any]] = []
    for value, ours, native in (
        (configured.name, TABLE_ENV, native_table),
        (configured.schema, SCHEMA_ENV, native_schema),
    ):
        if value is None:
            continue
        env.append({"name": ours, "value": value})
        if native is not None:
            env.append({"name": native, "value": value})
    return env


def run_options(spec: Spec) -> dict[str, Any]:
    """The version-table options of ``lockstep run``/``plan`` for ``spec`` (built-in tools)."""
    configured = spec.version_table
    own = spec.tool == sql.SqlAdapter.name and spec.owner
    return {
        "version_table": configured.name or (sql_history_name(spec.owner) if own else None),
        "version_table_schema": configured.schema,
        "owner": spec.owner or None,
        "baseline": spec.baseline_version,
    }


def reader_table(spec: Spec) -> tuple[VersionTableRef, str | None]:
    """The table the drift check and the revision readers read for ``spec``, and a fallback.

    The fallback is tool sql's shared table from before one history per resource: read while
    the resource's own table does not exist yet (its next run renames the shared one).
    """
    ref = resolve(spec.tool, spec.version_table, spec.owner)
    shared = spec.tool == sql.SqlAdapter.name and spec.version_table.name is None
    return ref, sql.HISTORY_TABLE if shared and ref.name != sql.HISTORY_TABLE else None
