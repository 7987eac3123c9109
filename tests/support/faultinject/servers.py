"""The lane databases of a campaign on one server: create, empty, wait out, drop.

Each lane of a campaign migrates its own database, so lanes run side by side; the session
monitor watches all of them through one admin connection.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pymysql
from sqlalchemy.engine import URL, make_url


def _admin(
    url: URL, database: str | None = None
) -> psycopg.Connection[tuple[object, ...]] | pymysql.Connection:
    if url.get_backend_name() == "postgresql":
        return psycopg.connect(
            host=url.host, port=url.port, user=url.username, password=url.password,
            dbname=database or url.database or "postgres", autocommit=True,
            application_name="faultinject-admin",
        )  # fmt: skip
    return pymysql.connect(
        host=url.host, port=url.port or 3306, user=url.username, password=url.password or "",
        database=database, autocommit=True,
    )  # fmt: skip


def _execute(
    url: URL, statements: list[str], database: str | None = None
) -> list[tuple[object, ...]]:
    rows: list[tuple[object, ...]] = []
    with _admin(url, database) as connection:
        for statement in statements:
            if isinstance(connection, psycopg.Connection):
                cursor = connection.execute(statement)
                rows = list(cursor.fetchall()) if cursor.description else []
            else:
                with connection.cursor() as mysql_cursor:
                    mysql_cursor.execute(statement)
                    rows = list(mysql_cursor.fetchall())
    return rows


def server_port(admin_url: str) -> int:
    url = make_url(admin_url)
    return url.port or (5432 if url.get_backend_name() == "postgresql" else 3306)


@contextmanager
def lane_databases(admin_url: str, prefix: str, count: int) -> Iterator[dict[str, str]]:
    """``count`` fresh databases named ``prefix_l<i>``: {name: url}; dropped afterwards."""
    url = make_url(admin_url)
    postgres = url.get_backend_name() == "postgresql"
    names = [f"{prefix}_l{i}" for i in range(count)]
    quote = '"{}"' if postgres else "`{}`"
    _execute(url, [f"CREATE DATABASE {quote.format(name)}" for name in names])
    try:
        yield {name: url.set(database=name).render_as_string(hide_password=False) for name in names}
    finally:
        drop = (
            'DROP DATABASE IF EXISTS "{}" WITH (FORCE)'
            if postgres
            else "DROP DATABASE IF EXISTS `{}`"
        )
        if not postgres:
            for name in names:
                terminate(admin_url, name)
        _execute(url, [drop.format(name) for name in names])


def reset(lane_url: str) -> None:
    """Empty the lane's database for the next trial (its sessions are gone by then)."""
    url = make_url(lane_url)
    name = url.database or ""
    if url.get_backend_name() == "postgresql":
        _execute(url, ["DROP SCHEMA public CASCADE", "CREATE SCHEMA public"], name)
    else:
        _execute(url.set(database=None), [f"DROP DATABASE `{name}`", f"CREATE DATABASE `{name}`"])


def sessions(admin_url: str, database: str) -> list[str]:
    """The sessions on ``database`` other than this one: 'backend: statement'."""
    url = make_url(admin_url)
    if url.get_backend_name() == "postgresql":
        query = (
            "SELECT pid, coalesce(state, '') || ': ' || left(query, 120) FROM pg_stat_activity "
            f"WHERE datname = '{database}' AND pid <> pg_backend_pid()"
        )
    else:
        query = (
            "SELECT ID, CONCAT(COMMAND, ': ', COALESCE(LEFT(INFO, 120), '')) FROM "
            f"information_schema.PROCESSLIST WHERE DB = '{database}' AND ID <> CONNECTION_ID()"
        )
    return [f"{backend}: {text}" for backend, text in _execute(url, [query])]


def settle(admin_url: str, database: str, timeout: float) -> list[str]:
    """Wait until ``database`` has no sessions; those still there after ``timeout`` (ended)."""
    deadline = time.monotonic() + timeout
    while (left := sessions(admin_url, database)) and time.monotonic() < deadline:
        time.sleep(0.1)
    if left:
        terminate(admin_url, database)
    return left


def terminate(admin_url: str, database: str) -> None:
    url = make_url(admin_url)
    if url.get_backend_name() == "postgresql":
        _execute(url, [
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{database}' AND pid <> pg_backend_pid()"
        ])  # fmt: skip
        return
    for backend, _text in (tuple(s.split(": ", 1)) for s in sessions(admin_url, database)):
        with contextlib.suppress(pymysql.MySQLError):  # it ended in between
            _execute(url, [f"KILL {int(backend)}"])
