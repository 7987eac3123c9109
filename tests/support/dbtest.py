"""Database helpers shared by e2e tests."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa

from lockstep import database
from lockstep.pod import lock


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


def rolled_back_by_hand(url: str) -> None:
    """What a person with a SQL prompt does: forget that V2 was applied (drift for Lockstep)."""
    engine = database.make_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(sa.text("DELETE FROM lockstep_schema_history WHERE version = '2'"))
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


def column_names(url: str, table: str) -> set[str]:
    engine = database.make_engine(url)
    try:
        with engine.connect() as connection:
            return {c["name"] for c in sa.inspect(connection).get_columns(table)}
    finally:
        engine.dispose()
