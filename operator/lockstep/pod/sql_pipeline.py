"""A transactional file's statements on PostgreSQL, sent in pipelines: no round trip each.

One statement per round trip made the runner wait on the network for every statement: 50,000
INSERTs took five times ``psql -1 -f`` (issue 21). libpq's pipeline mode sends a batch of
statements at once and reads their results afterwards, one result per statement, in order. Each
statement still goes to the server on its own (as the splitter cut it, as psql would send it),
and the server still runs them in order inside the file's one transaction.

What stays exact:

* **which statement failed**: each statement gets its own cursor, and psycopg attaches a result
  only to the cursors whose statement succeeded; the first cursor without one holds the failed
  statement (the server skips the rest of the pipeline after an error, "pipeline aborted");
* **nothing is kept**: the caller runs this inside the file's transaction, which an error leaves
  failed and the caller rolls back, as before;
* **SIGTERM** (:mod:`lockstep.pod.graceful_stop`): each batch fires SQLAlchemy's
  ``before_cursor_execute`` and ``after_cursor_execute`` events, so a stop that came between
  statements refuses the next batch, and one that comes while a batch runs finds the connection
  busy and cancels the running statement on the server (the rest of the batch is then skipped).

Only transactional files use it: a file that runs statement by statement (MySQL/MariaDB, or
``CREATE INDEX CONCURRENTLY``) records its progress after every statement, which a pipeline
would not leave room for (:mod:`lockstep.pod.sql_execution`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

import sqlalchemy as sa
from sqlalchemy import exc

from lockstep.sqlfiles import Statement

if TYPE_CHECKING:
    import psycopg

# Statements per pipeline: cursors and results of one batch are held until its end (about 2 KiB
# each); the sync at its end costs one round trip per batch.
BATCH: Final = 1000


class StatementError(Exception):
    """Statement ``index`` (0-based, of the statements given) failed with ``error``."""

    def __init__(self, index: int, error: exc.DBAPIError):
        super().__init__(str(error))
        self.index = index
        self.error = error


def can_pipeline(connection: sa.Connection) -> bool:
    """Whether the connection is a psycopg (3) connection to PostgreSQL: pipeline mode needs
    libpq 14 or later, which psycopg says."""
    if connection.dialect.name != "postgresql" or connection.dialect.driver != "psycopg":
        return False
    import psycopg  # here: SQLite and MySQL runs never load it

    return bool(psycopg.Pipeline.is_supported())


def execute(connection: sa.Connection, statements: Sequence[Statement]) -> None:
    """Run ``statements`` in order, in pipelines of :data:`BATCH`, inside the caller's
    transaction; raise :class:`StatementError` naming the first statement that failed."""
    for first in range(0, len(statements), BATCH):
        _execute_batch(connection, statements[first : first + BATCH], first)


def _execute_batch(connection: sa.Connection, batch: Sequence[Statement], first: int) -> None:
    import psycopg

    dbapi: Any = connection.connection.dbapi_connection
    shown = f"{batch[0].text} (and {len(batch) - 1} more in a pipeline)"
    cursors: list[psycopg.Cursor[Any]] = []
    try:
        _fire(connection, "before_cursor_execute", shown)
        with dbapi.pipeline():
            for statement in batch:
                cursor = dbapi.cursor()
                cursors.append(cursor)
                # No parameters: psycopg sends the text as written ('%' and ':name' included).
                cursor.execute(statement.text)
    except psycopg.Error as error:
        # Results come back in order: every statement before the failed one has its result.
        index = next((i for i, c in enumerate(cursors) if c.pgresult is None), 0)
        raise StatementError(first + index, _wrapped(connection, batch[index], error)) from error
    _fire(connection, "after_cursor_execute", shown)


def _fire(connection: sa.Connection, name: str, statement: str) -> None:
    """SQLAlchemy's cursor event ``name``, as its own execution would fire it."""
    for listener in getattr(connection.dispatch, name):
        listener(connection, None, statement, None, None, False)


def _wrapped(
    connection: sa.Connection, statement: Statement, error: psycopg.Error
) -> exc.DBAPIError:
    """The error as SQLAlchemy would have raised it, with the connection invalidated when the
    server is gone (as SQLAlchemy does), so that the caller's rollback does not fail on it."""
    import psycopg

    dbapi = connection.connection.dbapi_connection
    driver_error: Any = error  # SQLAlchemy types it as its DB-API protocol's Error
    lost = connection.dialect.is_disconnect(driver_error, dbapi, None)
    if lost:
        connection.invalidate(error)
    wrapped = exc.DBAPIError.instance(
        statement.text,
        None,
        error,
        psycopg.Error,
        hide_parameters=True,
        connection_invalidated=lost,
        dialect=connection.dialect,
    )
    assert isinstance(wrapped, exc.DBAPIError)
    return wrapped
