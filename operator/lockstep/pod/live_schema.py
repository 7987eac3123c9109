"""The live schema for the classifier: the columns the database's tables have now.

A plan that changes a column it did not declare leaves the classifier guessing its old type:
``ALTER COLUMN nick TYPE varchar(50)`` is free when ``nick`` is ``varchar(20)`` and a
rewrite that can fail when it is ``varchar(100)``.  The plan Job is connected to the target
database anyway, so it reads ``information_schema.columns`` (one query: every user schema
on PostgreSQL, the current schema's tables last so they win a name clash; the database on
MySQL/MariaDB) and hands the classifier the old types (a domain by its name, as DDL names
it), nullability and, on MySQL/MariaDB, ENUM members and AUTO_INCREMENT.  Read-only; a
failure to read leaves the schema unknown (the classifier then judges from the plan's text,
which errs on the side of asking).
"""

from __future__ import annotations

import logging
import re
from typing import Final

import sqlalchemy as sa

from lockstep import database, errors, url_secrets
from lockstep.classify import live
from lockstep.classify.coltypes import ColumnType
from lockstep.classify.findings import Questions
from lockstep.classify.plan import Column, Schema
from lockstep.pod import live_facts

log = logging.getLogger(__name__)

_POSTGRES_SQL: Final = sa.text(
    "SELECT table_name, column_name, coalesce(domain_name, udt_name), character_maximum_length,"
    " numeric_precision,"
    " numeric_scale, is_nullable, data_type FROM information_schema.columns"
    " WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
    " ORDER BY table_schema = current_schema()"  # the plan names tables unqualified
)
_MYSQL_SQL: Final = sa.text(
    "SELECT table_name, column_name, data_type, character_maximum_length, numeric_precision,"
    " numeric_scale, is_nullable, column_type, extra FROM information_schema.columns"
    " WHERE table_schema = DATABASE()"
)
# PostgreSQL's internal type names, spelt as lockstep.classify.postgres_columns spells them.
_POSTGRES_NAMES: Final = {
    "int2": "smallint",
    "int4": "int",
    "int8": "bigint",
    "bpchar": "char",
    "numeric": "decimal",
    "float4": "float",
    "float8": "double",
    "bool": "boolean",
}
_MYSQL_TEXT: Final = {"tinytext", "text", "mediumtext", "longtext"}
_MEMBER: Final = re.compile(r"'((?:[^']|'')*)'")


def read_url(url: str, questions: Questions | None = None) -> live.LiveSchema:
    """:func:`read_all` on a connection of its own to ``url``; empty when it cannot connect
    (the plan is then judged from its text, as without a database)."""
    try:
        identity = database.identity_from_url(url)
        engine = database.make_engine(url)
    except (errors.LockstepError, sa.exc.SQLAlchemyError, ValueError) as error:
        log.info("live schema not read (%s)", url_secrets.scrub(str(error), url))
        return {}, None
    try:
        with engine.connect() as connection:
            return read_all(connection, identity.engine, questions or Questions())
    except (sa.exc.SQLAlchemyError, OSError) as error:
        log.info("live schema not read (%s)", url_secrets.scrub(str(error), url))
        return {}, None
    finally:
        engine.dispose()


def read_all(connection: sa.Connection, engine: str, questions: Questions) -> live.LiveSchema:
    """The columns (:func:`read`) and the facts ``questions`` ask about the touched tables
    (:mod:`lockstep.pod.live_facts`), the small-table threshold from the environment."""
    columns = read(connection, engine)
    if not questions:
        return columns, None
    thresholds = live_facts.thresholds_from_env()
    return columns, live_facts.read(connection, engine, questions, columns, thresholds)


def read(connection: sa.Connection, engine: str) -> Schema:
    """Table -> column -> :class:`Column` for the current schema (empty on SQLite)."""
    if engine == "sqlite":
        return {}
    try:
        if engine == "postgresql":
            rows = connection.execute(_POSTGRES_SQL).all()
            pairs = [(row[0], row[1], _postgres_column(*row[2:])) for row in rows]
        else:
            rows = connection.execute(_MYSQL_SQL).all()
            pairs = [(row[0], row[1], _mysql_column(*row[2:])) for row in rows]
    except sa.exc.SQLAlchemyError as error:
        log.info("live schema not read (%s); classifying from the plan alone", error)
        return {}
    schema: dict[str, dict[str, Column]] = {}
    for table, name, column in pairs:
        schema.setdefault(str(table), {})[str(name).lower()] = column
    return schema


def _postgres_column(
    udt: str, length: int | None, precision: int | None, scale: int | None, nullable: str, kind: str
) -> Column:
    array = kind == "ARRAY"
    base = udt.removeprefix("_") if array else udt
    name = _POSTGRES_NAMES.get(base, base) + ("[]" if array else "")
    params: tuple[int, ...] = ()
    if base in ("varchar", "bpchar") and length is not None:
        params = (length,)
    elif base == "numeric" and precision is not None:
        params = (precision, scale or 0)
    return Column(ColumnType(name, params), nullable == "YES")


def _mysql_column(
    data_type: str,
    length: int | None,
    precision: int | None,
    scale: int | None,
    nullable: str,
    column_type: str,
    extra: str,
) -> Column:
    base = data_type.lower()
    unsigned = " unsigned" if "unsigned" in column_type.lower() else ""
    auto_increment = "auto_increment" in extra.lower()
    if base in ("enum", "set"):
        members = tuple(value.replace("''", "'") for value in _MEMBER.findall(column_type))
        return Column(ColumnType(base, values=members), nullable == "YES", auto_increment)
    if base in _MYSQL_TEXT:
        kind = ColumnType("text", (int(length or 0),))
    elif base in ("varchar", "char"):
        kind = ColumnType(base, (int(length),) if length is not None else ())
    elif base == "decimal":
        kind = ColumnType("decimal" + unsigned, _numeric(precision, scale))
    else:
        kind = ColumnType(base + unsigned)
    return Column(kind, nullable == "YES", auto_increment)


def _numeric(precision: int | None, scale: int | None) -> tuple[int, ...]:
    return (int(precision), int(scale or 0)) if precision is not None else ()
