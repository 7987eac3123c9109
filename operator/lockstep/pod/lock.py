"""The migration lock: one migration at a time per database.

Shared by the runner and the lock sidecar.  The lock lives on the database
server, so it also keeps out migrations Lockstep did not start (a second
operator, a hand-made Job, a developer's laptop) as long as they use Lockstep:

* PostgreSQL: session-level ``pg_advisory_lock(key)``, waited for with
  ``lock_timeout`` so the server queues waiters fairly and wakes them at once.
* MySQL/MariaDB: ``GET_LOCK(name, seconds)``.
* SQLite (local mode and tests): no server, so an exclusive ``flock`` on a
  file next to the database (``<db>.lockstep-lock``).  ``BEGIN EXCLUSIVE``
  would block the migration's own connection; a separate file lock does not,
  and the kernel drops it when the process dies, like a server would.

The lock is taken on a connection dedicated to it, switched to autocommit so it
never sits "idle in transaction" (where ``idle_in_transaction_session_timeout``
would kill it and silently release the lock).  It is released on exit; if the
process or the connection dies, the server releases it.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, TextIO

import sqlalchemy as sa
from sqlalchemy import exc

from lockstep import database, errors
from lockstep.database import DatabaseIdentity
from lockstep.pod import lock_words

log = logging.getLogger("lockstep.lock")

LockKind = Literal["pg_advisory_lock", "GET_LOCK", "file", "none"]
_PG_LOCK_NOT_AVAILABLE: Final = "55P03"
_FILE_POLL_SECONDS: Final = 0.1
_MYSQL_MAX_WAIT_TIMEOUT: Final = 31_536_000  # one year, the largest value MySQL accepts
# A PostgreSQL lock session whose client is gone without closing it ends after at most this:
# keepalive probes after 10 s idle, every 5 s, 3 unanswered (ignored on a Unix socket).
PG_LOST_HOLDER_SECONDS: Final = 25
_PG_KEEPALIVE: Final = {
    "tcp_keepalives_idle": "10",
    "tcp_keepalives_interval": "5",
    "tcp_keepalives_count": "3",
}


LockTimeout = lock_words.LockTimeout
_timeout = lock_words.lock_timeout


@dataclass(frozen=True)
class LockHold:
    """A lock that is held: what, how, and how long it took to get."""

    identity: DatabaseIdentity
    kind: LockKind
    key: str  # the advisory key, GET_LOCK name or lock file path
    wait_seconds: float


@contextlib.contextmanager
def hold_advisory_lock(
    connection: sa.Connection, identity: DatabaseIdentity, wait_seconds: float
) -> Iterator[LockHold]:
    """Hold the migration lock of ``identity`` for the ``with`` block.

    ``connection`` must be dedicated to the lock and not in a transaction; it
    is switched to autocommit.  Waits at most ``wait_seconds`` (0: try once),
    then raises :class:`LockTimeout`.  Unused for SQLite.
    """
    started = time.monotonic()
    if identity.family == "sqlite":
        with _hold_file_lock(identity, wait_seconds, started) as hold:
            yield hold
        return
    _autocommit(connection)
    _keep_idle_session_alive(connection, identity)
    if identity.family == "postgresql":
        key = database.advisory_lock_id(identity)
        _pg_acquire(connection, identity, key, wait_seconds, started)
        hold = LockHold(identity, "pg_advisory_lock", str(key), time.monotonic() - started)
        release = sa.text("SELECT pg_advisory_unlock(:key)").bindparams(key=key)
    else:
        name = database.advisory_lock_name(identity)
        _mysql_acquire(connection, identity, name, wait_seconds, started)
        hold = LockHold(identity, "GET_LOCK", name, time.monotonic() - started)
        release = sa.text("SELECT RELEASE_LOCK(:name)").bindparams(name=name)
    log.info("holding the migration lock on %s (waited %.1fs)", identity, hold.wait_seconds)
    try:
        yield hold
    finally:
        _release(connection, release, identity)


def _autocommit(connection: sa.Connection) -> None:
    # In autocommit mode SQLAlchemy still opens a logical transaction on first
    # use, so a connection that was switched already is fine as it is.
    if connection.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
        return
    if connection.in_transaction():
        raise ValueError("the lock needs a dedicated connection that is not in a transaction")
    connection.execution_options(isolation_level="AUTOCOMMIT")


def _keep_idle_session_alive(connection: sa.Connection, identity: DatabaseIdentity) -> None:
    """Stop the server from closing the lock's session while it sits idle, and have it notice
    soon when the holder is gone without closing it.

    The lock connection does nothing while the migration runs on another
    one; a server-wide ``idle_session_timeout`` (PostgreSQL 14+) or
    ``wait_timeout`` (MySQL) would end the session and free the lock mid-migration.

    A holder can also vanish without a word: its node powered off, its network cut, its pod's
    network torn down before its last packets left (seen on a real node). An idle backend then
    waits for a client that will never write, and with the kernel's default keepalive (two
    hours) the lock stays held that long. On PostgreSQL the session's own TCP keepalives and
    user timeout end such a session within :data:`PG_LOST_HOLDER_SECONDS`; the fence of the
    next holder deals with a migration backend the lost one may have left running.
    """
    if identity.family == "postgresql":
        version = connection.dialect.server_version_info or (0,)
        settings = dict(_PG_KEEPALIVE)
        if version >= (12,):
            settings["tcp_user_timeout"] = str(PG_LOST_HOLDER_SECONDS * 1000)
        if version >= (14,):
            settings["idle_session_timeout"] = "0"
        _pg_configure(connection, settings)
    else:
        connection.exec_driver_sql(f"SET SESSION wait_timeout = {_MYSQL_MAX_WAIT_TIMEOUT}")


def _release(
    connection: sa.Connection, statement: sa.TextClause, identity: DatabaseIdentity
) -> None:
    try:
        connection.execute(statement)
    except exc.DBAPIError as error:
        # The connection is gone, and the server released the lock with it.
        log.warning(
            "could not release the lock on %s (%s); the server drops it with the connection",
            identity,
            type(error.orig).__name__,
        )
    else:
        log.info("released the migration lock on %s", identity)


# --------------------------------------------------------------------------- PostgreSQL


def _pg_acquire(
    connection: sa.Connection,
    identity: DatabaseIdentity,
    key: int,
    wait_seconds: float,
    started: float,
) -> None:
    try_lock = sa.text("SELECT pg_try_advisory_lock(:key)").bindparams(key=key)
    if connection.execute(try_lock).scalar_one():
        return
    how = f"pg_advisory_lock key {key}"
    if wait_seconds <= 0:
        raise _timeout(identity, started, how, _pg_holder(connection, key))
    log.info(
        "another session holds the migration lock on %s; waiting up to %.0fs",
        identity,
        wait_seconds,
    )
    # lock_timeout 0 would mean "wait forever", hence at least 1 ms.
    budget_ms = max(1, math.ceil(wait_seconds * 1000))
    # lock_timeout bounds the wait; a server-wide statement_timeout must not
    # cut it short (and be mistaken for a lost connection).
    budget = {"lock_timeout": f"{budget_ms}ms", "statement_timeout": "0"}
    previous = _pg_settings(connection, list(budget))
    _pg_configure(connection, budget)
    try:
        connection.execute(sa.text("SELECT pg_advisory_lock(:key)").bindparams(key=key))
    except exc.OperationalError as error:
        if getattr(error.orig, "sqlstate", None) != _PG_LOCK_NOT_AVAILABLE:
            raise
        raise _timeout(identity, started, how, _pg_holder(connection, key)) from None
    finally:
        if not connection.invalidated:  # interrupted mid-wait: the connection is going anyway
            _pg_configure(connection, previous)


def _pg_settings(connection: sa.Connection, names: list[str]) -> dict[str, str]:
    """The session's values of ``names``, read in one round trip."""
    calls = ", ".join(f"current_setting(:name_{i})" for i in range(len(names)))
    row = connection.execute(
        sa.text(f"SELECT {calls}"), {f"name_{i}": name for i, name in enumerate(names)}
    ).one()
    return {name: str(value) for name, value in zip(names, row, strict=True)}


def _pg_configure(connection: sa.Connection, settings: dict[str, str]) -> None:
    """Set the session's ``settings`` in one statement: one round trip, not one per setting.
    The statement is built of literals; the names and values are bound parameters."""
    calls = ", ".join(f"set_config(:name_{i}, :value_{i}, false)" for i in range(len(settings)))
    values: dict[str, str] = {}
    for i, (name, value) in enumerate(settings.items()):
        values.update({f"name_{i}": name, f"value_{i}": value})
    connection.execute(sa.text(f"SELECT {calls}"), values)


def _pg_holder(connection: sa.Connection, key: int) -> str:
    """Who holds advisory ``key``, best effort (needs pg_stat_activity access)."""
    # A bigint advisory key shows in pg_locks as classid (high half) and objid (low half).
    query = sa.text(
        "SELECT l.pid, a.application_name, a.client_addr::text "
        "FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
        "AND l.classid = CAST(:high AS oid) AND l.objid = CAST(:low AS oid)"
    )
    high, low = lock_words.advisory_key_halves(key)
    try:
        row = connection.execute(query, {"high": high, "low": low}).first()
    except exc.DBAPIError:
        row = None
    return lock_words.pg_holder(None if row is None else (row[0], row[1], row[2]))


# --------------------------------------------------------------------------- MySQL / MariaDB


def _mysql_acquire(
    connection: sa.Connection,
    identity: DatabaseIdentity,
    name: str,
    wait_seconds: float,
    started: float,
) -> None:
    get_lock = sa.text("SELECT GET_LOCK(:name, :seconds)")
    if connection.execute(get_lock, {"name": name, "seconds": 0}).scalar() == 1:
        return
    how = f"GET_LOCK name {name!r}"
    if wait_seconds > 0:
        log.info(
            "another session holds the migration lock on %s; waiting up to %.0fs",
            identity,
            wait_seconds,
        )
        # Whole seconds: MySQL does not promise fractional GET_LOCK timeouts.
        seconds = math.ceil(wait_seconds)
        result = connection.execute(get_lock, {"name": name, "seconds": seconds}).scalar()
        if result == 1:
            return
        if result is None:
            raise errors.DatabaseUnavailable(
                f"GET_LOCK({name!r}) failed on {identity} (killed or out of memory); try again"
            )
    raise _timeout(identity, started, how, _mysql_holder(connection, name))


def _mysql_holder(connection: sa.Connection, name: str) -> str:
    try:
        holder = connection.execute(sa.text("SELECT IS_USED_LOCK(:name)"), {"name": name}).scalar()
        row = connection.execute(
            sa.text("SELECT USER, HOST FROM information_schema.PROCESSLIST WHERE ID = :id"),
            {"id": holder},
        ).first()
    except exc.DBAPIError:
        return "its holder is not visible to this user"
    if holder is None:
        return "it was released just now; try again"
    where = f" ({row[0]}@{row[1]})" if row else ""
    return f"it is held by connection id {holder}{where}; to end it: KILL {holder}"


# --------------------------------------------------------------------------- SQLite


def lock_file_path(identity: DatabaseIdentity) -> Path:
    return Path(f"{identity.database}.lockstep-lock")


@contextlib.contextmanager
def _hold_file_lock(
    identity: DatabaseIdentity, wait_seconds: float, started: float
) -> Iterator[LockHold]:
    if identity.database == ":memory:":
        # Private to its connection: nobody else can migrate it.
        yield LockHold(identity, "none", "", 0.0)
        return
    path = lock_file_path(identity)
    with path.open("a") as handle:
        _flock(handle, identity, path, wait_seconds, started)
        hold = LockHold(identity, "file", str(path), time.monotonic() - started)
        log.info("holding the migration lock file %s (waited %.1fs)", path, hold.wait_seconds)
        try:
            yield hold
        finally:
            # The file stays: deleting it would let two processes lock two different files.
            fcntl.flock(handle, fcntl.LOCK_UN)


def _flock(
    handle: TextIO, identity: DatabaseIdentity, path: Path, wait_seconds: float, started: float
) -> None:
    deadline = started + max(0.0, wait_seconds)
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise _timeout(
                    identity, started, f"lock file {path}", "another process holds it"
                ) from None
            time.sleep(_FILE_POLL_SECONDS)
        else:
            return
