"""The connections a run migrates on, and the database's errors in words a person reads.

The migration lock (on a connection of its own), the migration connection (autocommit where
DDL is not transactional), the statement lock timeout, and the translation of driver errors
into :class:`lockstep.errors.LockstepError` with the password scrubbed.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Iterator, Sequence
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy import exc

from lockstep import database, errors
from lockstep.contract import report
from lockstep.database import DatabaseIdentity
from lockstep.pod import lock, run_request

DB_ERROR_CHARS: Final = 300


@contextlib.contextmanager
def database_errors(identity: DatabaseIdentity, url: str) -> Iterator[None]:
    """Turn driver errors on Lockstep's own connections into errors a person can act on."""
    try:
        yield
    except (exc.OperationalError, exc.InterfaceError) as error:
        raise errors.DatabaseUnavailable(
            f"the database {identity} failed during the run: {db_error_text(error, url)}; "
            f"the run stopped: run it again once the database is reachable and healthy"
        ) from None
    except exc.DBAPIError as error:
        raise errors.DatabaseQueryFailed(
            f"a query of Lockstep's own failed on {identity}: {db_error_text(error, url)}; "
            f"check that the URL's user may create and write tables in this database"
        ) from None


@contextlib.contextmanager
def migration_lock(
    engine: sa.Engine, identity: DatabaseIdentity, request: run_request.RunRequest
) -> Iterator[float]:
    """Hold the migration lock (on its own connection); yields how long it took to get."""
    if not request.take_lock:
        yield 0.0
        return
    with (
        database.connect(engine, request.database_url) as lock_connection,
        lock.hold_advisory_lock(lock_connection, identity, request.lock_wait_seconds) as hold,
    ):
        yield hold.wait_seconds


@contextlib.contextmanager
def migration_connection(
    engine: sa.Engine, identity: DatabaseIdentity, url: str
) -> Iterator[sa.Connection]:
    with database.connect(engine, url) as connection:
        if identity.family == "mysql":
            # No transactional DDL: every statement commits, so record each as it happens.
            connection.execution_options(isolation_level="AUTOCOMMIT")
        yield connection


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h)\s*$")
_UNIT_MS: Final = {"ms": 1, "s": 1000, "m": 60_000, "min": 60_000, "h": 3_600_000}


def parse_duration_ms(text: str) -> int:
    """``"5s"`` → 5000, ``"500ms"`` → 500, ``"1m"`` → 60000 (a unit is required)."""
    match = _DURATION.match(text)
    if match is None:
        raise errors.InvalidRequest(
            f"statement lock timeout {text!r} is not a duration such as 500ms, 5s or 1m"
        )
    milliseconds = math.ceil(float(match[1]) * _UNIT_MS[match[2]])
    if milliseconds <= 0:
        raise errors.InvalidRequest(f"statement lock timeout {text!r} must be more than zero")
    return milliseconds


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
    text = database.scrub(text, url)
    return report.clip(text, DB_ERROR_CHARS)


def lock_hint(error: exc.DBAPIError) -> str:
    """Extra advice when a statement gave up waiting for a table lock."""
    sqlstate = getattr(error.orig, "sqlstate", None)
    args: tuple[Any, ...] = getattr(error.orig, "args", ())
    if sqlstate == "55P03" or (args and args[0] in (1205, 3572)) or "locked" in str(error.orig):
        return (
            " The statement waited longer than the statement lock timeout for a lock held by "
            "another session (a long query or an open transaction): run again later, or raise "
            "spec.timeouts.statementLockTimeout."
        )
    return ""


def short_list(items: Sequence[str], limit: int = 30) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")
