"""Which driver errors a retry can change (a lost connection) and which it cannot (a refusal)."""

from __future__ import annotations

import psycopg
import pymysql
import pytest
from sqlalchemy import exc

from lockstep.pod import sql_errors


def wrapped(
    original: Exception, kind: type[exc.DBAPIError] = exc.OperationalError
) -> exc.DBAPIError:
    return kind("SELECT 1", None, original)


@pytest.mark.parametrize(
    "original",
    [
        pymysql.err.OperationalError(2013, "Lost connection to MySQL server during query"),
        pymysql.err.OperationalError(2006, "MySQL server has gone away"),
        pymysql.err.OperationalError(1927, "Connection was killed"),
        psycopg.errors.AdminShutdown("terminating connection due to administrator command"),
        psycopg.errors.ConnectionFailure("connection failure"),
    ],
    ids=["mysql-lost", "mysql-gone", "mariadb-killed", "pg-terminated", "pg-08006"],
)
def test_lost_connections(original: Exception) -> None:
    assert sql_errors.connection_lost(wrapped(original))


@pytest.mark.parametrize(
    "original",
    [
        pymysql.err.OperationalError(1205, "Lock wait timeout exceeded"),
        pymysql.err.ProgrammingError(1146, "Table 'shop.no_such_table' doesn't exist"),
        psycopg.errors.LockNotAvailable("canceling statement due to lock timeout"),
        psycopg.errors.QueryCanceled("canceling statement due to user request"),
        psycopg.errors.ObjectNotInPrerequisiteState("COPY from stdin failed"),
    ],
    ids=["mysql-lock-wait", "mysql-no-table", "pg-lock-timeout", "pg-cancel", "pg-copy"],
)
def test_refusals_a_retry_cannot_change(original: Exception) -> None:
    """psycopg reports these as OperationalError too: the class alone does not decide."""
    assert not sql_errors.connection_lost(wrapped(original))


def test_an_interface_error_is_a_lost_connection() -> None:
    assert sql_errors.connection_lost(
        wrapped(pymysql.err.InterfaceError(0, ""), exc.InterfaceError)
    )
