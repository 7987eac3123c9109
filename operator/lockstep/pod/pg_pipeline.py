"""One batch of commands through libpq's pipeline mode: send them all, then read the results.

Shared by :mod:`lockstep.pod.sql_pipeline` (a file's statements on SQLAlchemy's connection) and
:mod:`lockstep.pod.pg_run` (whole files with their history rows, psycopg only); free of
SQLAlchemy. psycopg's own ``pipeline()`` costs about 20 µs of Python per statement (a cursor, a
queue entry, a generator each); this drives libpq through psycopg's public ``pq`` wrapper, about
2 µs. Results come back in command order; the first error result is the failed command's, and
the server skips the rest of the batch up to its sync ("pipeline aborted").
"""

from __future__ import annotations

import selectors
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from psycopg import pq

# A command's text, and its parameters in text format (None: no parameters, sent as written).
Command = tuple[bytes, Sequence[bytes | None] | None]


class Pipeline:
    """One batch through libpq's pipeline mode on a non-blocking connection."""

    def __init__(self, pgconn: pq.abc.PGconn) -> None:
        self.pgconn = pgconn
        self.done = 0  # commands that succeeded, in order, before the first error

    def send_and_collect(self, commands: Sequence[Command]) -> pq.abc.PGresult | None:
        """Send every command and a sync, then read the results: the first error's result, or
        None when all succeeded. Left in pipeline mode only by an exception: the caller then
        drops the connection."""
        pgconn = self.pgconn
        pgconn.enter_pipeline_mode()
        for text, parameters in commands:
            pgconn.send_query_params(text, parameters)
        pgconn.pipeline_sync()
        with selectors.DefaultSelector() as selector:
            self._flush(selector)
            failure = self._collect(selector)
        pgconn.exit_pipeline_mode()
        return failure

    def _flush(self, selector: selectors.BaseSelector) -> None:
        """Send what libpq buffered, reading results meanwhile so the server never blocks."""
        socket = self.pgconn.socket
        selector.register(socket, selectors.EVENT_READ | selectors.EVENT_WRITE)
        try:
            while self.pgconn.flush():
                for _key, events in selector.select():
                    if events & selectors.EVENT_READ:
                        self.pgconn.consume_input()
        finally:
            selector.unregister(socket)

    def _collect(self, selector: selectors.BaseSelector) -> pq.abc.PGresult | None:
        from psycopg import pq

        status = pq.ExecStatus
        selector.register(self.pgconn.socket, selectors.EVENT_READ)
        failure = None
        while True:
            while self.pgconn.is_busy():
                selector.select()
                self.pgconn.consume_input()
            result = self.pgconn.get_result()
            if result is None:  # the end of one command's results
                continue
            if result.status == status.PIPELINE_SYNC:  # the batch's end; no None follows
                return failure
            if result.status == status.FATAL_ERROR:
                failure = failure or result
            elif result.status != status.PIPELINE_ABORTED and failure is None:
                self.done += 1
