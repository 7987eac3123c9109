"""A transactional file's statements on PostgreSQL, sent in pipelines: no round trip each.

One statement per round trip made the runner wait on the network for every statement: 50,000
INSERTs took five times ``psql -1 -f`` (issue 21). libpq's pipeline mode sends a batch of
statements at once and reads their results afterwards, one result per statement, in order. Each
statement still goes to the server on its own (as the splitter cut it, as psql sends it), and the
server still runs them in order inside the file's one transaction. psycopg's own ``pipeline()``
costs about 20 µs of Python per statement (a cursor, a queue entry, a generator each); this
module drives libpq's pipeline through psycopg's public ``pq`` wrapper instead, about 2 µs
(:mod:`lockstep.pod.pg_pipeline`).

What stays exact:

* **which statement failed**: results come back in statement order; the first error result is
  the failed statement's, and the server skips the rest of the batch ("pipeline aborted");
* **nothing is kept**: the caller runs this inside the file's transaction, which an error leaves
  failed and the caller rolls back, as before. The pipeline opens that transaction with the
  ``BEGIN`` psycopg itself would send (a connection with an isolation level or read-only set has
  its first statement sent through psycopg, which opens it with those);
* **SIGTERM** (:mod:`lockstep.pod.graceful_stop`): each batch fires SQLAlchemy's
  ``before_cursor_execute`` and ``after_cursor_execute`` events, so a stop that came between
  statements refuses the next batch, and one that comes while a batch runs finds the connection
  busy (libpq says so for a pipeline in flight) and cancels the running statement on the
  server; the rest of the batch is then skipped;
* **a lost connection** is told as one, as SQLAlchemy tells it (the connection invalidated).

Only transactional files use it: a file that runs statement by statement (MySQL/MariaDB, or
``CREATE INDEX CONCURRENTLY``) records its progress after every statement, which a pipeline
would not leave room for (:mod:`lockstep.pod.sql_execution`). ``COPY`` cannot run in a pipeline:
a file with one runs statement by statement as before.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

import sqlalchemy as sa
from sqlalchemy import exc

from lockstep.pod import pg_pipeline
from lockstep.sqlfiles import Statement

if TYPE_CHECKING:
    import psycopg

# Statements per pipeline: one batch's text and results are held at once; the sync at its end
# costs one round trip per batch.
BATCH: Final = 1000
_COPY: Final = re.compile(r"copy\b", re.I)


class StatementError(Exception):
    """Statement ``index`` (0-based, of the statements given) failed with ``error``."""

    def __init__(self, index: int, error: exc.DBAPIError):
        super().__init__(str(error))
        self.index = index
        self.error = error


def can_pipeline(connection: sa.Connection, statements: Sequence[Statement]) -> bool:
    """Whether these statements can go in pipelines on this connection: psycopg (3) on
    PostgreSQL with a libpq that has pipeline mode (14 or later), and no ``COPY``."""
    if connection.dialect.name != "postgresql" or connection.dialect.driver != "psycopg":
        return False
    import psycopg  # here: SQLite and MySQL runs never load it

    if not psycopg.Pipeline.is_supported():
        return False
    return not any(_COPY.match(statement.text) for statement in statements)


def execute(connection: sa.Connection, statements: Sequence[Statement]) -> None:
    """Run ``statements`` in order inside the caller's (SQLAlchemy) transaction; raise
    :class:`StatementError` naming the first statement that failed."""
    import psycopg

    dbapi: psycopg.Connection[Any] = connection.connection.dbapi_connection  # type: ignore[assignment]
    idle = dbapi.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    plain = dbapi.isolation_level is None and dbapi.read_only is None and dbapi.deferrable is None
    first = 0
    if statements and idle and not plain:
        # psycopg opens the transaction with the connection's settings before this statement.
        _fire(connection, "before_cursor_execute", statements[0].text)
        try:
            dbapi.cursor().execute(statements[0].text, prepare=False)
        except psycopg.Error as error:
            raise StatementError(0, _wrapped(connection, statements[0], error)) from error
        _fire(connection, "after_cursor_execute", statements[0].text)
        first = 1
    for start in range(first, len(statements), BATCH):
        # The plain BEGIN psycopg would send first (no isolation level, no read-only) goes at
        # the head of the first pipeline instead of a round trip of its own.
        begin = idle and plain and start == 0
        _execute_batch(connection, dbapi, statements[start : start + BATCH], start, begin)


def _execute_batch(
    connection: sa.Connection,
    dbapi: psycopg.Connection[Any],
    batch: Sequence[Statement],
    first: int,
    begin: bool,
) -> None:
    import psycopg

    shown = f"{batch[0].text} (and {len(batch) - 1} more in a pipeline)"
    run = pg_pipeline.Pipeline(dbapi.pgconn)
    encoding = dbapi.info.encoding
    commands: list[pg_pipeline.Command] = [(b"BEGIN", None)] if begin else []
    commands.extend((statement.text.encode(encoding), None) for statement in batch)
    skipped = 1 if begin else 0  # the BEGIN's result does not count as a statement's
    try:
        _fire(connection, "before_cursor_execute", shown)
        failure = run.send_and_collect(commands)
    except psycopg.Error as error:  # refused by the stop handler, or the connection broke
        index = max(run.done - skipped, 0)
        failed = _wrapped(connection, batch[index], error)
        if dbapi.pgconn.pipeline_status != psycopg.pq.PipelineStatus.OFF:
            connection.invalidate(error)  # stuck mid-pipeline: closing it rolls the file back
        raise StatementError(first + index, failed) from error
    except BaseException:
        connection.invalidate()  # left mid-pipeline (a bug, an interrupt): never reuse it
        raise
    if failure is not None:
        refused = psycopg.errors.error_from_result(failure, encoding=encoding)
        index = max(run.done - skipped, 0)
        raise StatementError(first + index, _wrapped(connection, batch[index], refused))
    _fire(connection, "after_cursor_execute", shown)


def _fire(connection: sa.Connection, name: str, statement: str) -> None:
    """SQLAlchemy's cursor event ``name``, as its own execution would fire it."""
    for listener in getattr(connection.dispatch, name):
        listener(connection, None, statement, None, None, False)


def _wrapped(connection: sa.Connection, statement: Statement, error: Exception) -> exc.DBAPIError:
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
