"""Each migration file starts from the same clean session, with Lockstep's settings.

A file may ``SET search_path``, ``SET lock_timeout = 0``, ``SET foreign_key_checks = 0`` or
``USE`` another database; none of that may reach the next file. The session's settings are
taken once, when the run starts (Lockstep's statement lock timeout already applied), and
put back after every file: PostgreSQL by ``RESET ALL`` (and ``RESET ROLE``) then Lockstep's own
session settings again; MySQL/MariaDB by setting back every session variable a file changed and
the default database; SQLite by its connection pragmas.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy import exc

from lockstep.database import DatabaseIdentity

log = logging.getLogger("lockstep.runner")

# Session variables that change by themselves (clocks, counters, ids): not settings a file made.
_MYSQL_VOLATILE: Final = frozenset(
    {
        "timestamp",
        "rand_seed1",
        "rand_seed2",
        "insert_id",
        "last_insert_id",
        "identity",
        "pseudo_thread_id",
        "last_gtid",
        "gtid_seq_no",
        "gtid_next",
        "gtid_owned",
        "warning_count",
        "error_count",
        "in_transaction",
        "thread_id",
    }
)
_SQLITE_PRAGMAS: Final = (
    "foreign_keys",
    "recursive_triggers",
    "legacy_alter_table",
    "busy_timeout",
)


@dataclass(frozen=True)
class Baseline:
    """The session as the run set it up, before any file ran."""

    family: str
    settings: dict[str, str] = field(default_factory=dict)
    database: str | None = None  # MySQL: the default database


def capture(connection: sa.Connection, identity: DatabaseIdentity) -> Baseline:
    with connection.begin():
        if identity.family == "postgresql":
            rows = connection.exec_driver_sql(
                "SELECT name, setting FROM pg_settings WHERE source = 'session'"
            )
            return Baseline("postgresql", {str(n): str(v) for n, v in rows})
        if identity.family == "mysql":
            database = connection.exec_driver_sql("SELECT DATABASE()").scalar()
            return Baseline("mysql", _mysql_variables(connection), str(database))
        return Baseline("sqlite", _sqlite_pragmas(connection))


def reset_in_transaction(connection: sa.Connection, baseline: Baseline) -> bool:
    """Put a PostgreSQL session back inside the file's transaction, in one round trip; False
    (nothing done) elsewhere.

    ``RESET ALL``, ``RESET ROLE`` and ``set_config`` are transactional: run at the end of the
    file's transaction they take effect with its commit, and vanish with its rollback, as the
    file's own ``SET``s do. :func:`restore` after the commit cost a transaction and a round trip
    per setting, most of a small file's cost (issue 21).
    """
    if baseline.family != "postgresql":
        return False
    connection.exec_driver_sql(_pg_reset_script(connection, baseline))
    return True


def _pg_reset_script(connection: sa.Connection, baseline: Baseline) -> str:
    """One statement string (simple protocol: several statements, no parameters)."""
    from psycopg import sql

    dbapi: Any = connection.connection.dbapi_connection

    def literal(text: str) -> str:
        return str(sql.Literal(text).as_string(dbapi))

    settings = ", ".join(
        f"set_config({literal(name)}, {literal(value)}, false)"
        for name, value in baseline.settings.items()
    )
    return "RESET ALL; RESET ROLE" + (f"; SELECT {settings}" if settings else "")


def restore(connection: sa.Connection, baseline: Baseline) -> None:
    """Put the session back as :func:`capture` found it."""
    with connection.begin():
        if baseline.family == "postgresql":
            connection.exec_driver_sql(_pg_reset_script(connection, baseline))
        elif baseline.family == "mysql":
            _restore_mysql(connection, baseline)
        else:
            now = _sqlite_pragmas(connection)
            for name, value in baseline.settings.items():
                if now.get(name) != value:
                    connection.exec_driver_sql(f"PRAGMA {name} = {int(value)}")


def _mysql_variables(connection: sa.Connection) -> dict[str, str]:
    rows = connection.exec_driver_sql("SHOW SESSION VARIABLES")
    return {str(n).lower(): str(v) for n, v in rows if str(n).lower() not in _MYSQL_VOLATILE}


def _restore_mysql(connection: sa.Connection, baseline: Baseline) -> None:
    if (
        baseline.database
        and connection.exec_driver_sql("SELECT DATABASE()").scalar() != baseline.database
    ):
        quoted = connection.dialect.identifier_preparer.quote(baseline.database)
        connection.exec_driver_sql(f"USE {quoted}")
    now = _mysql_variables(connection)
    for name, value in baseline.settings.items():
        if now.get(name) == value:
            continue
        setting: str | int = int(value) if value.lstrip("-").isdigit() else value
        try:  # a failed SET aborts nothing on MySQL: the others are still set back
            connection.exec_driver_sql(f"SET SESSION {name} = %s", (setting,))
        except exc.DBAPIError as error:
            log.warning("could not set session variable %s back after a file: %s", name, error.orig)


def _sqlite_pragmas(connection: sa.Connection) -> dict[str, str]:
    return {
        name: str(connection.exec_driver_sql(f"PRAGMA {name}").scalar()) for name in _SQLITE_PRAGMAS
    }
