"""The connections a run migrates on, and the database's errors in words a person reads.

The migration lock (on a connection of its own), the migration connection (autocommit where
DDL is not transactional), the statement lock timeout, and the translation of driver errors
into :class:`lockstep.errors.LockstepError` with the password scrubbed.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Iterator
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy import event, exc

from lockstep import database, url_secrets
from lockstep.contract import report
from lockstep.database import DatabaseIdentity
from lockstep.pod import fence, lock, run_request, sql_errors, sql_messages, sql_rows

DB_ERROR_CHARS: Final = 300
# True while migration_connection opens its connection: the run's engine tags that one alone.
_TAGGING: Final = contextvars.ContextVar("lockstep_tag_migration_connection", default=False)


@contextlib.contextmanager
def database_errors(identity: DatabaseIdentity, url: str) -> Iterator[None]:
    """Turn driver errors on Lockstep's own connections into errors a person can act on."""
    try:
        yield
    except exc.DBAPIError as error:
        # By what a retry can change: a lost connection may come back; a refused query will
        # be refused again (psycopg reports many refusals as OperationalError too).
        lost = sql_errors.connection_lost(error)
        raise sql_messages.run_query_failed(identity, db_error_text(error, url), lost) from None


@contextlib.contextmanager
def migration_lock(
    engine: sa.Engine, identity: DatabaseIdentity, request: run_request.RunRequest
) -> Iterator[tuple[float, sa.Connection | None]]:
    """Hold the migration lock (on its own connection); yields how long it took to get, and
    that connection (autocommit; None when a sidecar holds the lock), which may fence."""
    if not request.take_lock:
        yield 0.0, None
        return
    with (
        database.connect(engine, request.database_url) as lock_connection,
        lock.hold_advisory_lock(lock_connection, identity, request.lock_wait_seconds) as hold,
    ):
        yield hold.wait_seconds, lock_connection


def fence_earlier_runs(
    engine: sa.Engine,
    identity: DatabaseIdentity,
    url: str,
    wait_seconds: float,
    lock_connection: sa.Connection | None = None,
) -> dict[str, str]:
    """End the backends of earlier runs still working on the database (see :mod:`.fence`).

    Call it once the migration lock is held and before anything changes. Returns a result
    field saying what was ended, or nothing when nothing was running. On the lock's own
    connection when given (as the lock sidecar does: a connection less per run, issue 21).
    """
    if lock_connection is not None:
        fenced = fence.fence_earlier_runs(lock_connection, identity, wait_seconds)
    else:
        with database.connect(engine, url) as connection:
            connection.execution_options(isolation_level="AUTOCOMMIT")
            fenced = fence.fence_earlier_runs(connection, identity, wait_seconds)
    if not fenced:
        return {}
    return {"fenced": report.clip(fence.describe(fenced), DB_ERROR_CHARS)}


@contextlib.contextmanager
def migration_connection(
    engine: sa.Engine, identity: DatabaseIdentity, url: str
) -> Iterator[sa.Connection]:
    """The connection migrations run on, tagged so that a later run's fence can find it.

    PostgreSQL: ``application_name`` is a startup parameter of this connection (set as
    ``engine`` opens it, for it alone), so ``RESET ALL`` or ``DISCARD ALL`` in a file keeps it.
    MySQL/MariaDB: the connection holds the named lock :func:`lockstep.pod.fence.run_lock_name`.
    It is the run's engine's: a second engine would set up its dialect again on its first
    connection, queries included (issue 21). Closed (NullPool) when the block ends.
    """
    with _connect_tagged(engine, identity, url) as connection:
        if identity.family == "mysql":
            # No transactional DDL: every statement commits, so record each as it happens.
            connection.execution_options(isolation_level="AUTOCOMMIT")
            fence.tag_mysql_connection(connection, identity)
            connection.commit()  # ends SQLAlchemy's autobegun block; the named lock stays
        fence.refuse_if_another_run(connection, identity)
        yield connection


def _connect_tagged(engine: sa.Engine, identity: DatabaseIdentity, url: str) -> sa.Connection:
    if identity.family != "postgresql":
        return database.connect(engine, url)
    if not event.contains(engine, "do_connect", _tag):
        event.listen(engine, "do_connect", _tag)
    tagging = _TAGGING.set(True)
    try:
        return database.connect(engine, url)
    finally:
        _TAGGING.reset(tagging)


def _tag(_dialect: Any, _record: Any, _args: Any, params: dict[str, Any]) -> None:
    if _TAGGING.get():
        params["application_name"] = fence.MIGRATION_APPLICATION_NAME


parse_duration_ms = run_request.parse_duration_ms


def set_lock_timeout(
    connection: sa.Connection, identity: DatabaseIdentity, milliseconds: int | None
) -> None:
    """Bound how long one migration statement waits for a table lock.

    Without it, an ALTER TABLE queued behind a long query blocks every later
    query on that table: the application stalls although the migration has
    not even started.  Failing fast and retrying later is kinder.
    """
    if milliseconds is None:
        return
    with connection.begin():
        if identity.family == "postgresql":
            connection.execute(
                sa.text("SELECT set_config('lock_timeout', :value, false)"),
                {"value": f"{milliseconds}ms"},
            )
        elif identity.family == "mysql":
            seconds = max(1, math.ceil(milliseconds / 1000))  # whole seconds only
            connection.exec_driver_sql(f"SET SESSION lock_wait_timeout = {seconds}")
            connection.exec_driver_sql(f"SET SESSION innodb_lock_wait_timeout = {seconds}")
        else:
            connection.exec_driver_sql(f"PRAGMA busy_timeout = {milliseconds}")


# --------------------------------------------------------------------------- shared helpers


def db_error_text(error: BaseException, url: str) -> str:
    """The database's own words, one line, without secrets."""
    original = error.orig if isinstance(error, exc.DBAPIError) else error
    args: tuple[Any, ...] = getattr(original, "args", ())
    if len(args) == 2 and isinstance(args[0], int):  # PyMySQL: (code, message)
        text = f"{args[1]} (error {args[0]})"
    else:
        lines = str(original).strip().splitlines()
        text = lines[0] if lines else type(original).__name__
    text = url_secrets.scrub(text, url)
    return report.clip(text, DB_ERROR_CHARS)


def lock_hint(error: exc.DBAPIError) -> str:
    """Extra advice when a statement gave up waiting for a table lock."""
    sqlstate = getattr(error.orig, "sqlstate", None)
    args: tuple[Any, ...] = getattr(error.orig, "args", ())
    locked = sqlstate == sql_messages.LOCK_NOT_AVAILABLE or (args and args[0] in (1205, 3572))
    return sql_messages.LOCK_HINT if locked or "locked" in str(error.orig) else ""


short_list = sql_rows.short_list
