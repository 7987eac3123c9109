"""The PostgreSQL fast path's connections: connect, the migration lock, the fence, the tag.

What :mod:`lockstep.pod.lock`, :mod:`lockstep.pod.fence` and :mod:`lockstep.pod.run_session`
do through SQLAlchemy, done on psycopg directly so that `lockstep run` on PostgreSQL starts
without importing SQLAlchemy (its import and engine set-up were half of a run's fixed cost,
issue 21). The same statements, the same settings, the same errors and messages
(:mod:`lockstep.pod.lock_words`); docs/adr/0009-the-fence.md and
docs/adr/0016-runner-pipelines.md say why each step is there.

Connections are psycopg connections in autocommit mode: every statement here is its own
transaction, as on SQLAlchemy's AUTOCOMMIT lock connection; the migration connection opens the
files' transactions itself (:mod:`lockstep.pod.pg_run`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Final

from lockstep import constants, db_identity, url_secrets
from lockstep.contract import report
from lockstep.db_identity import DatabaseIdentity
from lockstep.pod import fence_policy, lock_words, sql_messages

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger("lockstep.lock")

# As lockstep.database._connect_args for PostgreSQL (and lock._PG_KEEPALIVE, lock.PG_*).
_CONNECT: Final[dict[str, Any]] = {
    "connect_timeout": 10,
    "application_name": "lockstep",
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
}
_LOCK_SESSION: Final = {
    "tcp_keepalives_idle": "10",
    "tcp_keepalives_interval": "5",
    "tcp_keepalives_count": "3",
}
_LOST_HOLDER_MS: Final = 25_000
_DETAIL_CHARS: Final = 300
_PG_LOST_STATES: Final = frozenset({"57P01", "57P02", "57P03"})
_TAGGED: Final = (
    "SELECT pid, coalesce(query, '') FROM pg_stat_activity "
    "WHERE datname = current_database() AND application_name = %s AND pid <> pg_backend_pid()"
)
_ALIVE: Final = "SELECT pid FROM pg_stat_activity WHERE pid = ANY(%s)"
_HOLDER: Final = (
    "SELECT l.pid, a.application_name, a.client_addr::text "
    "FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid "
    "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
    "AND l.classid = CAST(%s AS oid) AND l.objid = CAST(%s AS oid)"
)


def connect(
    params: dict[str, Any], url: str, application_name: str = ""
) -> psycopg.Connection[Any]:
    """A connection as :func:`lockstep.database.make_engine` would open it (bounded connect,
    keepalives, ``application_name`` lockstep unless given), in autocommit mode."""
    import psycopg

    options = {**params, **_CONNECT}
    if application_name:
        options["application_name"] = application_name
    try:
        return psycopg.connect(**options, autocommit=True)
    except psycopg.Error as error:
        raise db_identity.connect_failed(url, str(error)) from None


def detail(error: BaseException, url: str) -> str:
    """The database's own words, one line, without secrets (as run_session.db_error_text)."""
    lines = str(error).strip().splitlines()
    text = lines[0] if lines else type(error).__name__
    return report.clip(url_secrets.scrub(text, url), _DETAIL_CHARS)


def lost(error: BaseException, connection: psycopg.Connection[Any] | None = None) -> bool:
    """Whether the connection died under ``error`` (a retry may help), as sql_errors tells it."""
    import psycopg

    sqlstate = getattr(error, "sqlstate", None)
    if isinstance(sqlstate, str) and (sqlstate.startswith("08") or sqlstate in _PG_LOST_STATES):
        return True
    if isinstance(error, psycopg.InterfaceError):
        return True
    return connection is not None and (connection.closed or connection.broken)


def lock_hint(error: BaseException) -> str:
    locked = getattr(error, "sqlstate", None) == sql_messages.LOCK_NOT_AVAILABLE
    return sql_messages.LOCK_HINT if locked or "locked" in str(error) else ""


@contextlib.contextmanager
def run_errors(identity: DatabaseIdentity, url: str) -> Iterator[None]:
    """Driver errors of Lockstep's own queries in words (as run_session.database_errors)."""
    import psycopg

    try:
        yield
    except psycopg.Error as error:
        raise sql_messages.run_query_failed(identity, detail(error, url), lost(error)) from None


@contextlib.contextmanager
def own_query(what: str, identity: DatabaseIdentity, url: str) -> Iterator[None]:
    """Name the Lockstep query that failed (as sql_bookkeeping.own_query)."""
    import psycopg

    try:
        yield
    except psycopg.Error as error:
        failed = sql_messages.own_query_failed(what, identity, detail(error, url), lost(error))
        raise failed from None


# --------------------------------------------------------------------------- the lock


@contextlib.contextmanager
def migration_lock(
    connection: psycopg.Connection[Any], identity: DatabaseIdentity, wait_seconds: float
) -> Iterator[float]:
    """Hold ``pg_advisory_lock`` on ``connection`` (dedicated to it); yields the wait."""
    started = time.monotonic()
    _keep_idle_session_alive(connection)
    key = db_identity.advisory_lock_id(identity)
    _acquire(connection, identity, key, wait_seconds, started)
    waited = time.monotonic() - started
    log.info("holding the migration lock on %s (waited %.1fs)", identity, waited)
    try:
        yield waited
    finally:
        _release(connection, identity, key)


def _keep_idle_session_alive(connection: psycopg.Connection[Any]) -> None:
    """As lock._keep_idle_session_alive: the lock's idle session is neither ended by the
    server nor kept for hours after its holder vanished."""
    settings = dict(_LOCK_SESSION)
    major = connection.info.server_version // 10000
    if major >= 12:
        settings["tcp_user_timeout"] = str(_LOST_HOLDER_MS)
    if major >= 14:
        settings["idle_session_timeout"] = "0"
    _configure(connection, settings)


def _configure(connection: psycopg.Connection[Any], settings: dict[str, str]) -> None:
    calls = ", ".join("set_config(%s, %s, false)" for _ in settings)
    values = [part for item in settings.items() for part in item]
    connection.execute(f"SELECT {calls}", values)  # built of literals


def _acquire(
    connection: psycopg.Connection[Any],
    identity: DatabaseIdentity,
    key: int,
    wait_seconds: float,
    started: float,
) -> None:
    import psycopg

    row = connection.execute("SELECT pg_try_advisory_lock(%s)", [key]).fetchone()
    if row and row[0]:
        return
    how = f"pg_advisory_lock key {key}"
    if wait_seconds <= 0:
        raise lock_words.lock_timeout(identity, started, how, _holder(connection, key))
    log.info(
        "another session holds the migration lock on %s; waiting up to %.0fs",
        identity,
        wait_seconds,
    )
    budget = {"lock_timeout": f"{max(1, math.ceil(wait_seconds * 1000))}ms"}
    budget["statement_timeout"] = "0"
    previous = {}
    for name in budget:
        found = connection.execute("SELECT current_setting(%s)", [name]).fetchone()
        previous[name] = str(found[0]) if found else ""
    _configure(connection, budget)
    try:
        connection.execute("SELECT pg_advisory_lock(%s)", [key])
    except psycopg.errors.LockNotAvailable:
        raise lock_words.lock_timeout(identity, started, how, _holder(connection, key)) from None
    finally:
        if not connection.closed and not connection.broken:
            _configure(connection, previous)


def _holder(connection: psycopg.Connection[Any], key: int) -> str:
    import psycopg

    try:
        row = connection.execute(_HOLDER, list(lock_words.advisory_key_halves(key))).fetchone()
    except psycopg.Error:
        row = None
    return lock_words.pg_holder(None if row is None else (row[0], row[1], row[2]))


def _release(connection: psycopg.Connection[Any], identity: DatabaseIdentity, key: int) -> None:
    import psycopg

    try:
        connection.execute("SELECT pg_advisory_unlock(%s)", [key])
    except psycopg.Error as error:
        log.warning(
            "could not release the lock on %s (%s); the server drops it with the connection",
            identity,
            type(error).__name__,
        )
    else:
        log.info("released the migration lock on %s", identity)


# --------------------------------------------------------------------------- the fence


def fence_earlier_runs(
    connection: psycopg.Connection[Any], identity: DatabaseIdentity, wait_seconds: float
) -> list[lock_words.FencedBackend]:
    """As fence.fence_earlier_runs on PostgreSQL: end the tagged backends of earlier runs."""

    def tagged() -> list[lock_words.FencedBackend]:
        rows = connection.execute(_TAGGED, [constants.MIGRATION_APPLICATION_NAME]).fetchall()
        return [lock_words.FencedBackend(int(pid), lock_words.clip(query)) for pid, query in rows]

    def alive(pids: set[int]) -> set[int]:
        found = connection.execute(_ALIVE, [sorted(pids)]).fetchall()
        return {int(pid) for (pid,) in found}

    backends = fence_policy.Backends(
        tagged, lambda backend: _terminate(connection, identity, backend), alive
    )
    return fence_policy.end_and_wait(backends, identity, wait_seconds, log)


def _terminate(
    connection: psycopg.Connection[Any],
    identity: DatabaseIdentity,
    backend: lock_words.FencedBackend,
) -> None:
    import psycopg

    try:
        connection.execute("SELECT pg_terminate_backend(%s)", [backend.backend_id])
    except psycopg.errors.InsufficientPrivilege:
        row = connection.execute("SELECT current_user").fetchone()
        user = str(row[0]) if row else "?"
        raise lock_words.pg_may_not_end(backend, identity, user) from None


def migration_connection(
    params: dict[str, Any], identity: DatabaseIdentity, url: str
) -> psycopg.Connection[Any]:
    """The tagged migration connection (``application_name`` a startup parameter), refused
    when another tagged backend works on the database (fence.refuse_if_another_run)."""
    connection = connect(params, url, constants.MIGRATION_APPLICATION_NAME)
    try:
        rows = connection.execute(_TAGGED, [constants.MIGRATION_APPLICATION_NAME]).fetchall()
        if rows:
            raise lock_words.another_run(identity, [(int(pid), str(q)) for pid, q in rows])
    except BaseException:
        connection.close()
        raise
    return connection


def set_lock_timeout(connection: psycopg.Connection[Any], milliseconds: int | None) -> None:
    """As run_session.set_lock_timeout on PostgreSQL."""
    if milliseconds is not None:
        connection.execute("SELECT set_config('lock_timeout', %s, false)", [f"{milliseconds}ms"])
