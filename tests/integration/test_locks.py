"""The migration lock on real servers: exclusive, bounded wait, released on exit and on death."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from lockstep import database
from lockstep.pod import lock
from lockstep.pod.lock import LockTimeout

pytestmark = pytest.mark.integration

OPERATOR_SOURCE = Path(__file__).resolve().parents[2] / "operator"


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    engine = database.make_engine(db_url)
    yield engine
    engine.dispose()


def identity(url: str) -> database.DatabaseIdentity:
    return database.identity_from_url(url)


def test_second_holder_times_out_then_gets_it_after_release(db_url: str, engine: sa.Engine) -> None:
    with engine.connect() as first, engine.connect() as second:
        with lock.hold_advisory_lock(first, identity(db_url), 1) as hold:
            assert hold.wait_seconds < 1
            with (
                pytest.raises(LockTimeout) as caught,
                lock.hold_advisory_lock(second, identity(db_url), 0),
            ):
                pytest.fail("two holders at once")
            assert caught.value.reason == "LockTimeout"
        with lock.hold_advisory_lock(second, identity(db_url), 0) as hold:
            assert hold.kind in ("pg_advisory_lock", "GET_LOCK", "file")


def test_waiter_gets_the_lock_when_the_holder_releases_it(db_url: str, engine: sa.Engine) -> None:
    releasing = threading.Event()

    def hold_briefly(connection: sa.Connection, acquired: threading.Event) -> None:
        with lock.hold_advisory_lock(connection, identity(db_url), 1):
            acquired.set()
            time.sleep(0.8)
            releasing.set()  # set before the release: the waiter may win the race to it

    with engine.connect() as first, engine.connect() as second:
        acquired = threading.Event()
        holder = threading.Thread(target=hold_briefly, args=(first, acquired))
        holder.start()
        assert acquired.wait(5)
        with lock.hold_advisory_lock(second, identity(db_url), 10) as hold:
            assert releasing.is_set()
            assert 0.3 < hold.wait_seconds < 5
        holder.join()


def test_timeout_message_says_where_how_long_and_what_to_do(db_url: str, engine: sa.Engine) -> None:
    with (
        engine.connect() as first,
        engine.connect() as second,
        lock.hold_advisory_lock(first, identity(db_url), 1),
    ):
        started = time.monotonic()
        with (
            pytest.raises(LockTimeout) as caught,
            lock.hold_advisory_lock(second, identity(db_url), 0.5),
        ):
            pass
        waited = time.monotonic() - started
    # MySQL's GET_LOCK waits whole seconds.
    assert 0.4 < waited < 3
    message = str(caught.value)
    assert "timed out after" in message
    assert str(identity(db_url)) in message
    assert "lockWaitSeconds" in message
    assert caught.value.waited_seconds == pytest.approx(waited, abs=0.3)
    if identity(db_url).family == "postgresql":
        assert "pg_terminate_backend(" in message
    elif identity(db_url).family == "mysql":
        assert "KILL " in message


def test_postgresql_restores_lock_timeout_after_waiting(pg_url: str) -> None:
    engine = database.make_engine(pg_url)
    with (
        engine.connect() as first,
        engine.connect() as second,
        lock.hold_advisory_lock(first, identity(pg_url), 1),
    ):

        def release_soon() -> None:
            time.sleep(0.3)
            first.execute(
                sa.text("SELECT pg_advisory_unlock(:k)"),
                {"k": database.advisory_lock_id(identity(pg_url))},
            )

        threading.Thread(target=release_soon).start()
        with lock.hold_advisory_lock(second, identity(pg_url), 5):
            setting = second.execute(sa.text("SHOW lock_timeout")).scalar_one()
    engine.dispose()
    assert setting == "0"


def test_lock_dies_with_its_holder(db_url: str, engine: sa.Engine) -> None:
    """A killed holder (no release, no clean disconnect) frees the lock for the next one."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from lockstep import database\n"
            "from lockstep.pod import lock\n"
            "url = sys.argv[1]\n"
            "engine = database.make_engine(url)\n"
            "connection = engine.connect()\n"
            "with lock.hold_advisory_lock(connection, database.identity_from_url(url), 5):\n"
            "    print('held', flush=True)\n"
            "    time.sleep(60)\n",
            db_url,
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(OPERATOR_SOURCE)},
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        with engine.connect() as connection:
            with (
                pytest.raises(LockTimeout),
                lock.hold_advisory_lock(connection, identity(db_url), 0),
            ):
                pass
            holder.kill()
            holder.wait(10)
            with lock.hold_advisory_lock(connection, identity(db_url), 10) as hold:
                assert hold.wait_seconds < 10
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(10)


def test_locks_of_different_databases_do_not_meet(pg_url: str, postgres_admin_url: str) -> None:
    other = make_other_database_url(pg_url)
    engine = database.make_engine(pg_url)
    other_engine = database.make_engine(other)
    with (
        engine.connect() as first,
        other_engine.connect() as second,
        lock.hold_advisory_lock(first, identity(pg_url), 0),
        lock.hold_advisory_lock(second, identity(other), 0) as hold,
    ):
        assert hold.wait_seconds < 1
    engine.dispose()
    other_engine.dispose()


def make_other_database_url(url: str) -> str:
    # The same server's "postgres" database: another database, same lock namespace mechanics.
    return sa.engine.make_url(url).set(database="postgres").render_as_string(hide_password=False)


def test_sqlite_in_memory_needs_no_lock() -> None:
    url = "sqlite://"
    engine = database.make_engine(url)
    with (
        engine.connect() as connection,
        lock.hold_advisory_lock(connection, identity(url), 0) as hold,
    ):
        assert hold.kind == "none"
    engine.dispose()


def test_lock_connection_must_not_be_in_a_transaction(pg_url: str) -> None:
    engine = database.make_engine(pg_url)
    with engine.connect() as connection:
        connection.execute(sa.text("SELECT 1"))
        with (
            pytest.raises(ValueError, match="dedicated connection"),
            lock.hold_advisory_lock(connection, identity(pg_url), 0),
        ):
            pass
    engine.dispose()


def test_postgresql_statement_timeout_does_not_cut_the_wait_short(pg_url: str) -> None:
    engine = database.make_engine(pg_url)
    with (
        engine.connect() as first,
        engine.connect() as second,
        lock.hold_advisory_lock(first, identity(pg_url), 0),
    ):
        second.execution_options(isolation_level="AUTOCOMMIT")
        second.exec_driver_sql("SET statement_timeout = '100ms'")
        started = time.monotonic()
        with (
            pytest.raises(LockTimeout),
            lock.hold_advisory_lock(second, identity(pg_url), 0.8),
        ):
            pass
        assert time.monotonic() - started > 0.7
        assert second.exec_driver_sql("SHOW statement_timeout").scalar_one() == "100ms"
    engine.dispose()


def test_postgresql_idle_lock_session_survives_idle_session_timeout(pg_url: str) -> None:
    """The lock connection idles while the migration runs elsewhere: it must not be closed."""
    engine = database.make_engine(pg_url)
    with engine.connect() as connection:
        connection.execution_options(isolation_level="AUTOCOMMIT")
        connection.exec_driver_sql("SET idle_session_timeout = '500ms'")
        with lock.hold_advisory_lock(connection, identity(pg_url), 0):
            time.sleep(1.2)
            assert connection.exec_driver_sql("SELECT 1").scalar_one() == 1
    engine.dispose()


def test_postgresql_lock_session_ends_soon_when_its_holder_vanishes(pg_url: str) -> None:
    """A holder gone without closing its connection (node lost, network cut) must not keep the
    lock for the kernel's two-hour keepalive: the session's own keepalives end it in ~25 s."""
    engine = database.make_engine(pg_url)
    with engine.connect() as connection, lock.hold_advisory_lock(connection, identity(pg_url), 0):
        shown = {
            name: connection.exec_driver_sql(f"SHOW {name}").scalar_one()
            for name in ("tcp_keepalives_idle", "tcp_keepalives_interval", "tcp_keepalives_count")
        }
        assert shown == {
            "tcp_keepalives_idle": "10",
            "tcp_keepalives_interval": "5",
            "tcp_keepalives_count": "3",
        }, "the test database is reached over TCP: the server reports the session's values"
        user_timeout = connection.exec_driver_sql("SHOW tcp_user_timeout").scalar_one()
        assert user_timeout == str(lock.PG_LOST_HOLDER_SECONDS * 1000)  # milliseconds
        idle, interval, count = (int(value) for value in shown.values())
        assert idle + interval * count <= lock.PG_LOST_HOLDER_SECONDS
    engine.dispose()
