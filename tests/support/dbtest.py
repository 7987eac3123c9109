"""Database helpers shared by the integration and e2e tests."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from lockstep import database
from lockstep.pod import graceful_stop, lock, pg_run, runner
from lockstep.pod.run_request import RunRequest, RunResult


@contextlib.contextmanager
def lock_held(url: str) -> Iterator[None]:
    """Another migration (the test) holds the database's migration lock for the `with` block."""
    engine = database.make_engine(url)
    try:
        identity = database.identity_from_url(url)
        with engine.connect() as connection, lock.hold_advisory_lock(connection, identity, 5):
            yield
    finally:
        engine.dispose()


def rolled_back_by_hand(url: str, history_table: str) -> None:
    """What a person with a SQL prompt does: forget that V2 was applied (drift for Lockstep)."""
    engine = database.make_engine(url)
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql(f"DELETE FROM {history_table} WHERE version = '2'")
    finally:
        engine.dispose()


def scalar(url: str, query: str) -> Any:
    """The first column of the first row of `query`, on a fresh connection."""
    engine = database.make_engine(url)
    try:
        with engine.connect() as connection:
            return connection.execute(sa.text(query)).scalar()
    finally:
        engine.dispose()


def rows(url: str, query: str) -> list[tuple[Any, ...]]:
    """Every row of `query`, on a fresh connection."""
    engine = database.make_engine(url)
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(sa.text(query))]
    finally:
        engine.dispose()


def column_names(url: str, table: str) -> set[str]:
    engine = database.make_engine(url)
    try:
        with engine.connect() as connection:
            return {c["name"] for c in sa.inspect(connection).get_columns(table)}
    finally:
        engine.dispose()


def tables(url: str) -> set[str]:
    engine = database.make_engine(url)
    try:
        with engine.connect() as connection:
            return set(sa.inspect(connection).get_table_names())
    finally:
        engine.dispose()


def execute(url: str, *statements: str) -> None:
    """Run ``statements`` in one transaction, as a person at a SQL prompt would."""
    engine = database.make_engine(url)
    try:
        with engine.begin() as connection:
            for statement in statements:
                connection.exec_driver_sql(statement)
    finally:
        engine.dispose()


def family(url: str) -> str:
    return database.identity_from_url(url).family


def run_sql(url: str, source: Path, target: str = "head", **options: Any) -> RunResult:
    """``lockstep run --tool sql`` in-process, with short lock waits for tests.

    Through :func:`lockstep.pod.pg_run.run`, as the command runs it: PostgreSQL takes the fast
    path where it applies, everything else :func:`lockstep.pod.runner.run`.
    ``LOCKSTEP_TEST_FULL_PATH=1`` sends every run through ``runner.run`` (SQLAlchemy) instead,
    so that the same tests check both paths on PostgreSQL.
    """
    settings: dict[str, Any] = {"lock_wait_seconds": 10.0, "statement_lock_timeout": "5s"}
    settings.update(options)
    request = RunRequest(tool="sql", source_dir=source, database_url=url, target=target, **settings)
    if os.environ.get("LOCKSTEP_TEST_FULL_PATH") == "1":
        return runner.run(request)
    return pg_run.run(request, (), graceful_stop.GracefulStop())
