"""Database helpers shared by e2e tests."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from lockstep import database, lock


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
