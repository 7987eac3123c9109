"""Every network wait is bounded (issue 16): a server that accepts the TCP connection and then
says nothing must not hang a run, the lock or a version reader; a reader's query is bounded."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import exc

from lockstep import database, errors, version_tables

pytestmark = pytest.mark.integration

BOUND_SECONDS = 1


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP server that accepts every connection and never sends a byte."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(2)
    for connection in accepted:
        connection.close()
    server.close()


def ends_within(seconds: float, call: Callable[[], Any]) -> BaseException | None:
    """Run ``call`` in a thread; fail the test if it is still running after ``seconds``."""
    outcome: list[BaseException | None] = []

    def target() -> None:
        try:
            call()
            outcome.append(None)
        except BaseException as error:  # noqa: BLE001 - the test looks at it
            outcome.append(error)

    thread = threading.Thread(target=target, daemon=True)
    started = time.monotonic()
    thread.start()
    thread.join(seconds)
    assert outcome, f"still waiting after {time.monotonic() - started:.1f} s: unbounded"
    return outcome[0]


@pytest.mark.parametrize("scheme", ["mysql", "mariadb", "postgresql"])
def test_connecting_to_a_silent_server_is_bounded(
    silent_server: int, scheme: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Today PyMySQL waits for the server's greeting forever (its connect_timeout covers the
    TCP connect only)."""
    monkeypatch.setattr(database, "CONNECT_TIMEOUT_SECONDS", BOUND_SECONDS)
    url = f"{scheme}://lockstep:s3cret-pass@127.0.0.1:{silent_server}/shop"
    engine = database.make_engine(url)
    try:
        error = ends_within(BOUND_SECONDS + 8, lambda: database.connect(engine, url).close())
    finally:
        engine.dispose()
    assert isinstance(error, errors.DatabaseUnavailable), error
    assert "s3cret-pass" not in str(error)


def test_version_reader_on_a_silent_server_is_bounded(
    silent_server: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(database, "CONNECT_TIMEOUT_SECONDS", BOUND_SECONDS)
    url = f"mysql://lockstep:pw@127.0.0.1:{silent_server}/shop"
    error = ends_within(BOUND_SECONDS + 8, lambda: version_tables.read_revision("sql", url))
    assert isinstance(error, exc.OperationalError), error


@pytest.mark.parametrize("db_url", ["postgresql", "mariadb"], indirect=True)
def test_a_reader_query_is_bounded(db_url: str) -> None:
    sleep = {"postgresql": "SELECT pg_sleep(30)", "mysql": "SELECT SLEEP(30)"}
    engine = database.make_engine(db_url, query_timeout_seconds=BOUND_SECONDS)
    family = database.identity_from_url(db_url).family

    def slow_query() -> None:
        with engine.connect() as connection:
            result = connection.execute(sa.text(sleep[family])).scalar()
            # MariaDB answers an interrupted SLEEP() with 1 rather than an error.
            if result == 1:
                raise TimeoutError("interrupted")

    try:
        error = ends_within(BOUND_SECONDS + 8, slow_query)
    finally:
        engine.dispose()
    assert error is not None


@pytest.mark.parametrize("db_url", ["postgresql", "mariadb"], indirect=True)
def test_the_runner_s_statements_are_not_cut_short(db_url: str) -> None:
    """Without a query bound (the runner's engine), a long statement runs to its end."""
    sleep = {"postgresql": "SELECT pg_sleep(2)", "mysql": "SELECT SLEEP(2)"}
    family = database.identity_from_url(db_url).family
    engine = database.make_engine(db_url)
    try:
        with engine.connect() as connection:
            connection.execute(sa.text(sleep[family]))
    finally:
        engine.dispose()
