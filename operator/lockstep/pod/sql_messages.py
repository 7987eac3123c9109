"""How a transactional SQL file's failure is told, worded once for both ways of running it.

The SQLAlchemy path (:mod:`lockstep.pod.sql_execution`, every engine) and the PostgreSQL fast
path (:mod:`lockstep.pod.pg_run`, psycopg only) must say the same thing about the same failure:
the file, the statement's line and text, what the database kept, and whether running again can
help. Free of SQLAlchemy and drivers: the callers pass the database's words (``detail``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from lockstep import errors
from lockstep.db_identity import DatabaseIdentity

if TYPE_CHECKING:  # a name only: an Alembic run words its query failures here, and reads no file
    from lockstep.sqlfiles import Statement

STATEMENT_CHARS: Final = 160
LOCK_HINT: Final = (
    " The statement waited longer than the statement lock timeout for a lock held by "
    "another session (a long query or an open transaction): run again later, or raise "
    "spec.timeouts.statementLockTimeout."
)
LOCK_NOT_AVAILABLE: Final = "55P03"


def file_failed(
    name: str, statement: Statement, identity: DatabaseIdentity, detail: str, hint: str
) -> errors.MigrationFailed:
    """A statement of a file run in one transaction failed; the file was rolled back."""
    return errors.MigrationFailed(
        f"{name} failed at line {statement.line} on {identity}: {detail} (statement: "
        f"{statement.shortened(STATEMENT_CHARS)}). Lockstep rolled the whole file "
        f"back: the database is as before this file. Fix the file and run again.{hint}",
        file=name,
        line=statement.line,
    )


def lost_in_file(
    name: str, statement: Statement, identity: DatabaseIdentity, detail: str
) -> errors.DatabaseUnavailable:
    return errors.DatabaseUnavailable(
        f"the connection to {identity} was lost while {name} line {statement.line} ran: "
        f"{detail}. The server rolls back the open transaction of a lost connection, so "
        f"nothing of {name} stays applied; run again once the database is reachable."
    )


def lost_at_commit(name: str, identity: DatabaseIdentity, detail: str) -> errors.LockstepError:
    return errors.DatabaseUnavailable(
        f"the connection to {identity} was lost while committing {name}: {detail}. Whether "
        f"it committed is the server's to say: run again once the database is reachable; "
        f"Lockstep reads its history first and runs {name} again only if it did not commit."
    )


def own_query_failed(
    what: str, identity: DatabaseIdentity, detail: str, lost: bool
) -> errors.LockstepError:
    """One of Lockstep's own queries (``what`` it tried) failed."""
    if lost:
        return errors.DatabaseUnavailable(
            f"the connection to {identity} was lost while Lockstep tried to {what}: "
            f"{detail}; run again once the database is reachable"
        )
    return errors.DatabaseQueryFailed(
        f"Lockstep's own query failed on {identity} while trying to {what}: {detail}; "
        f"check that the URL's user may create, read and write that table"
    )


def run_query_failed(identity: DatabaseIdentity, detail: str, lost: bool) -> errors.LockstepError:
    """A query of Lockstep's own failed outside a named step (the run's frame)."""
    if lost:
        return errors.DatabaseUnavailable(
            f"the database {identity} failed during the run: {detail}; "
            f"the run stopped: run it again once the database is reachable and healthy"
        )
    return errors.DatabaseQueryFailed(
        f"a query of Lockstep's own failed on {identity}: {detail}; "
        f"check that the URL's user may create and write tables in this database"
    )


def no_current_schema(identity: DatabaseIdentity, query: str) -> errors.DatabaseQueryFailed:
    return errors.DatabaseQueryFailed(
        f"{identity} has no current schema ({query} returned nothing): set the user's "
        f"search_path (PostgreSQL) or put the database in the URL, then run again"
    )
