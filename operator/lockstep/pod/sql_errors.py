"""Which database errors a retry can change: a lost connection, as opposed to a refused statement.

A statement the server refuses (a syntax error, a missing table, ``COPY ... FROM stdin``) fails
the same way next time: that is the file's (or the setup's) fault. A connection that died under
a statement (the server restarted, a proxy dropped it, an administrator terminated the backend,
a read timed out) says nothing about the file: the run may succeed once the database is back.
"""

from __future__ import annotations

from typing import Any, Final

from sqlalchemy import exc

# PostgreSQL: class 08 (connection exception), and the server shutting down or terminating the
# backend (admin_shutdown, crash_shutdown, cannot_connect_now).
_PG_LOST_STATES: Final = frozenset({"57P01", "57P02", "57P03"})
# MySQL/MariaDB client and server codes: server gone away, lost connection during query (also a
# read timeout), commands out of sync after a drop, connection killed, server shutting down.
_MYSQL_LOST_CODES: Final = frozenset({1053, 1927, 2006, 2013, 2014, 2045, 2055, 4031})


def connection_lost(error: exc.DBAPIError) -> bool:
    """True when the connection died: the statement's outcome is the server's, not the file's."""
    if error.connection_invalidated or isinstance(error, exc.InterfaceError):
        return True
    original = error.orig
    sqlstate = getattr(original, "sqlstate", None)
    if isinstance(sqlstate, str) and (sqlstate.startswith("08") or sqlstate in _PG_LOST_STATES):
        return True
    args: tuple[Any, ...] = getattr(original, "args", ())
    if args and isinstance(args[0], int) and args[0] in _MYSQL_LOST_CODES:
        return True
    closed = getattr(getattr(original, "pgconn", None), "status", None)
    return closed is not None and int(closed) != 0  # psycopg: CONNECTION_OK is 0
