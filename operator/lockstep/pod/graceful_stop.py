"""SIGTERM for `lockstep run`: stop the running statement on the server, then say what happened.

Kubernetes sends SIGTERM to every container of a pod that is deleted, evicted or past its
deadline. Exiting at once would leave the migration's statement running on the server with its
transaction open, beside the next run (see :mod:`lockstep.pod.fence`). So:

* before the migration connection exists (waiting for the lock, checks), nothing has changed:
  the handler raises :class:`StoppedBeforeMigrating` (a ``KeyboardInterrupt``, on which psycopg
  cancels a waiting query) and the run reports that nothing changed;
* while migrating, the handler cancels the statement on the server (PostgreSQL: a cancel
  request; MySQL/MariaDB: ``KILL QUERY`` from a second connection), and if no statement is
  running, the next one fails before it is sent. The migration code then fails the file as
  for any error, rolling back what the engine can roll back and recording what it cannot,
  and the run reports that failure, prefixed with the stop (:func:`interrupted`).
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Any, Final, TypeVar

from lockstep import errors
from lockstep.db_identity import DatabaseIdentity

T = TypeVar("T")

if TYPE_CHECKING:  # SQLAlchemy loads only on the paths that use it (issue 21)
    import sqlalchemy as sa

log = logging.getLogger("lockstep.runner")

STOP_SIGNALS: Final = (signal.SIGTERM, signal.SIGINT)
_CANCELLED_BY_STOP: Final = "canceling statement: lockstep run received SIGTERM"


class RunInterrupted(errors.LockstepError):
    """The run was stopped by a signal; the message says what the database kept."""

    reason = "Interrupted"


class StoppedBeforeMigrating(KeyboardInterrupt):
    """Raised by the handler while nothing has changed yet."""


@dataclass
class GracefulStop:
    """What the SIGTERM handler needs: the migration connection, once there is one."""

    signal_name: str = ""
    _connection: sa.Connection | None = None
    _driver: Any = None  # the psycopg connection of the PostgreSQL fast path (no SQLAlchemy)
    _identity: DatabaseIdentity | None = None
    _url: str = ""
    _statement_running: bool = False
    _refuse_next_statement: bool = False

    @property
    def requested(self) -> bool:
        return bool(self.signal_name)

    @property
    def migrating(self) -> bool:
        """Whether the migration connection exists (before it, nothing has changed)."""
        return self._connection is not None or self._driver is not None

    def install(self) -> None:
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._handle)

    def watch(self, connection: sa.Connection, identity: DatabaseIdentity, url: str) -> None:
        """From now on a stop cancels statements on ``connection`` instead of raising."""
        from sqlalchemy import event

        event.listen(connection, "before_cursor_execute", self._before)
        event.listen(connection, "after_cursor_execute", self._after)
        self._connection, self._identity, self._url = connection, identity, url
        if self.requested:  # the signal came while the connection was being opened
            self._refuse_next_statement = True

    def watch_driver(self, connection: Any, identity: DatabaseIdentity) -> None:
        """:meth:`watch` for a psycopg connection of its own (PostgreSQL fast path): its
        runner asks :meth:`refuses_next_statement` before it sends each batch."""
        self._driver, self._identity = connection, identity
        if self.requested:
            self._refuse_next_statement = True

    def unwatch_driver(self) -> None:
        """The fast path handed the run to the SQLAlchemy path before changing anything."""
        self._driver = None
        self._refuse_next_statement = False

    def refuses_next_statement(self) -> bool:
        """Whether a stop came while no statement ran: the next must not be sent (once)."""
        refused, self._refuse_next_statement = self._refuse_next_statement, False
        return refused

    def cancel_error(self) -> Exception:
        """The driver's own "query cancelled" error, as a refused statement fails."""
        return _driver_cancel_error(self._identity)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        first = not self.requested
        self.signal_name = signal.Signals(signum).name
        if not self.migrating:
            log.warning("%s received before migrating: stopping, nothing changed", self.signal_name)
            raise StoppedBeforeMigrating(self.signal_name)
        if not first:
            return
        log.warning("%s received: cancelling the running migration statement", self.signal_name)
        try:
            busy = self._busy()
        except Exception:  # noqa: BLE001 - the connection is closed: the migration is over
            return
        if busy:
            self._cancel()
        else:
            self._refuse_next_statement = True

    def _busy(self) -> bool:
        """Whether a statement of the migration connection is running on the server.

        PostgreSQL: exact, from libpq's transaction status. Elsewhere: between the cursor
        events (after a failed statement it stays set; the run is failing anyway).
        """
        if self._identity is None:
            return False
        if self._identity.family != "postgresql":
            return self._statement_running
        import psycopg.pq

        dbapi: Any = self._driver
        if dbapi is None and self._connection is not None:
            dbapi = self._connection.connection.dbapi_connection
        return bool(dbapi.info.transaction_status == psycopg.pq.TransactionStatus.ACTIVE)

    def _cancel(self) -> None:
        connection, identity = self._connection, self._identity
        assert identity is not None
        try:
            if self._driver is not None:
                self._driver.cancel()
                return
            assert connection is not None
            if identity.family == "postgresql":
                dbapi: Any = connection.connection.dbapi_connection
                dbapi.cancel()
            elif identity.family == "mysql":
                _kill_query(connection, self._url)
            else:  # SQLite: the statement runs in this process
                connection.connection.dbapi_connection.interrupt()  # type: ignore[union-attr]
        except Exception as error:  # noqa: BLE001 - the stop must go on; say why it did not cancel
            log.warning("could not cancel the running statement: %s", type(error).__name__)

    def _before(self, *_args: Any) -> None:
        if self._refuse_next_statement:
            self._refuse_next_statement = False
            raise _driver_cancel_error(self._identity)
        self._statement_running = True

    def _after(self, *_args: Any) -> None:
        self._statement_running = False


def _kill_query(connection: sa.Connection, url: str) -> None:
    """MySQL/MariaDB cancel: ``KILL QUERY`` on a second connection (the first is busy)."""
    from lockstep import database

    connection_id = connection.connection.dbapi_connection.thread_id()  # type: ignore[union-attr]
    engine = database.make_engine(url)
    try:
        with engine.connect() as killer:
            killer.exec_driver_sql(f"KILL QUERY {int(connection_id)}")
    finally:
        engine.dispose()


def _driver_cancel_error(identity: DatabaseIdentity | None) -> Exception:
    """The driver's own "query cancelled" error, so the migration code fails the file as usual."""
    if identity is not None and identity.family == "postgresql":
        import psycopg.errors

        return psycopg.errors.QueryCanceled(_CANCELLED_BY_STOP)
    if identity is not None and identity.family == "mysql":
        import pymysql.err

        return pymysql.err.OperationalError(1317, "Query execution was interrupted")
    import sqlite3

    return sqlite3.OperationalError("interrupted")


def interrupted(stop: GracefulStop, error: errors.LockstepError) -> errors.LockstepError:
    """``error`` (how the migration failed) told as a stop; keeps a reason a person must act on.

    A partly applied file stays ``PartiallyApplied`` (the next run must refuse it); any other
    failure becomes ``Interrupted``, which the operator retries.
    """
    what = (
        f"lockstep run was stopped by {stop.signal_name} (the pod was deleted, evicted or "
        f"reached its deadline) and cancelled its running statement on the server. "
    )
    # The failure path's advice was written for a broken file or a lost server; after a stop
    # neither is the cause, and the operator retries by itself.
    told = (
        str(error)
        .replace(" Fix the file and run again.", " The file is not at fault.")
        .replace("run again once the database is reachable", "Lockstep runs it again")
    )
    if isinstance(error, errors.PartiallyApplied):
        error.args = (what + told,)
        return error
    return RunInterrupted(what + told)


def before_migrating(stop: GracefulStop) -> RunInterrupted:
    return RunInterrupted(
        f"lockstep run was stopped by {stop.signal_name or 'a signal'} (the pod was deleted, "
        f"evicted or reached its deadline) before it changed anything: the database is as "
        f"before this run, which will run again."
    )


def reported(
    stop: GracefulStop,
    run: Callable[[], T],
    let_through: tuple[type[Exception], ...] = (),
) -> T:
    """``run()``, with a stop reported for what it did: nothing yet (:func:`before_migrating`,
    whatever broke on the way out), or the failure it caused (:func:`interrupted`). Errors of
    the ``let_through`` types are raised as they are (they are not the run's outcome)."""
    try:
        return run()
    except let_through:
        raise
    except (StoppedBeforeMigrating, Exception) as error:
        if stop.requested and not stop.migrating:
            raise before_migrating(stop) from None
        if stop.requested and isinstance(error, errors.LockstepError):
            raise interrupted(stop, error) from None
        raise
