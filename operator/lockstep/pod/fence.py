"""The fence: no backend of an earlier run may still work on the database when a run migrates.

The migration lock lives on a connection of its own (:mod:`lockstep.pod.lock`). When the
process holding it dies, the server frees the lock at once, while the migration's connection
(another backend) can still be executing its statement on the server: a killed client does not
stop a running query. A new run would then take the lock and migrate beside it.

So every migration connection of a run carries a tag the server can see, and two places end
tagged backends that are not their own and wait until the server has removed them:

* a run, once the lock is held and before anything changes (:func:`fence_earlier_runs`);
* the lock holder, when it is told to stop, before it releases the lock (the same function).

The tags (see docs/adr/0009-the-fence.md):

* PostgreSQL: ``application_name = 'lockstep-migration'`` (:data:`MIGRATION_APPLICATION_NAME`)
  on every migration connection; external tools get it through ``PGAPPNAME`` or their URL.
* MySQL/MariaDB: the migration connection holds a second named lock, ``R`` (:func:`run_lock_name`),
  taken with ``GET_LOCK(R, 0)`` right after connecting; ``IS_USED_LOCK(R)`` names the holder.
  When user code opens a connection of its own to migrate (the ``env.py`` that ``alembic init``
  writes), ``R`` moves to it (:func:`mark_follows_new_connections`).

Every wait is bounded; an error says what is still running, and what privilege is missing.
The ending and the wait are :mod:`lockstep.pod.fence_policy`'s, shared with the PostgreSQL
fast path (:mod:`lockstep.pod.pg_direct`); this module says how SQLAlchemy finds and ends.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Iterator
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy import event, exc, pool

from lockstep import constants
from lockstep.database import DatabaseIdentity
from lockstep.pod import fence_policy, lock_words

log = logging.getLogger("lockstep.fence")

MIGRATION_APPLICATION_NAME: Final = constants.MIGRATION_APPLICATION_NAME
_MYSQL_LOCK_NAME_MAX: Final = 64
_PG_INSUFFICIENT_PRIVILEGE: Final = "42501"
_MYSQL_NOT_OWNER: Final = frozenset({1095})  # "You are not owner of thread"
_MYSQL_UNKNOWN_THREAD: Final = 1094


FenceFailed = lock_words.FenceFailed
FencedBackend = lock_words.FencedBackend
describe = lock_words.describe
_clip = lock_words.clip


def run_lock_name(identity: DatabaseIdentity) -> str:
    """``R``: the MySQL/MariaDB named lock a run's migration connection holds while it lives.

    ``GET_LOCK`` names are server-wide and at most 64 characters, hence the database name
    (hashed when too long); the host is left out for the reason given in
    :func:`lockstep.database.advisory_lock_id`.
    """
    readable = f"lockstep-run:{identity.database}"
    if len(readable) <= _MYSQL_LOCK_NAME_MAX:
        return readable
    return "lockstep-run:" + hashlib.sha256(identity.database.encode()).hexdigest()[:40]


def tag_mysql_connection(connection: sa.Connection, identity: DatabaseIdentity) -> None:
    """Take ``R`` on a new MySQL/MariaDB migration connection, so the fence can find it.

    ``R`` is free: the caller's run holds the migration lock and has fenced, so no live run
    holds it. If it is taken, something migrates without Lockstep's lock: refuse.
    """
    name = run_lock_name(identity)
    got = connection.execute(sa.text("SELECT GET_LOCK(:name, 0)"), {"name": name}).scalar()
    if got != 1:
        holder = connection.execute(sa.text("SELECT IS_USED_LOCK(:name)"), {"name": name}).scalar()
        raise FenceFailed(
            f"connection id {holder} on {identity} holds {name!r}, the mark of a running "
            f"migration, although this run holds the migration lock: a migration runs there "
            f"without Lockstep's lock. End it (KILL {holder}) or wait for it, then run again"
        )


@contextlib.contextmanager
def mark_follows_new_connections(
    connection: sa.Connection, identity: DatabaseIdentity
) -> Iterator[None]:
    """While user code migrates in this process, ``R`` moves to the first connection it opens.

    An ``env.py`` that connects by itself runs the revisions on that connection, not on
    ``connection`` (the run's tagged one, holding ``R``, left idle): the next run's fence must
    find and end the connection that works. PostgreSQL needs nothing: Lockstep hands the tag in
    the URL that env.py reads. ``R`` is free during the move for an instant only, while this run
    holds the migration lock, so no other run can be looking for it; should it be taken anyway,
    a migration runs without the lock and the new connection refuses, as a run's own would.
    """
    if identity.family != "mysql":
        yield
        return
    name = run_lock_name(identity)
    moved = False

    def take_the_mark(dbapi_connection: Any, _record: Any) -> None:
        nonlocal moved
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("SELECT DATABASE()")
            (current,) = cursor.fetchone()
            if moved or current != identity.database:
                return
            connection.execute(sa.text("SELECT RELEASE_LOCK(:name)"), {"name": name})
            connection.commit()
            cursor.execute("SELECT GET_LOCK(%s, 0), CONNECTION_ID()", (name,))
            got, connection_id = cursor.fetchone()
        finally:
            cursor.close()
        if got != 1:
            raise FenceFailed(
                f"another connection on {identity} holds {name!r}, the mark of a running "
                f"migration, although this run holds the migration lock: a migration runs there "
                f"without Lockstep's lock. This run stops rather than migrate beside it"
            )
        moved = True
        log.info("the migration mark moved to connection %s, which env.py opened", connection_id)

    event.listen(pool.Pool, "connect", take_the_mark)
    try:
        yield
    finally:
        event.remove(pool.Pool, "connect", take_the_mark)
        if moved:  # back to the run's connection, now that user code is done (no-op if held)
            connection.execute(sa.text("SELECT GET_LOCK(:name, 0)"), {"name": name})
            connection.commit()


def refuse_if_another_run(connection: sa.Connection, identity: DatabaseIdentity) -> None:
    """On a new, tagged PostgreSQL migration connection: refuse if another one is on the database.

    The fence ran before; a tagged backend now is a run that lost its lock holder and goes on
    (its sidecar died, the pod lives). Tag first, look second: of two runs that race, at least
    the later one sees the other and stops. (MySQL/MariaDB get the same from ``GET_LOCK(R, 0)``.)
    """
    if identity.family != "postgresql":
        return
    rows = connection.execute(_PG_TAGGED, {"tag": MIGRATION_APPLICATION_NAME}).all()
    connection.commit()  # end SQLAlchemy's autobegun block before the migration's own
    if rows:
        raise lock_words.another_run(identity, [(int(pid), str(q)) for pid, q in rows])


def fence_earlier_runs(
    connection: sa.Connection, identity: DatabaseIdentity, wait_seconds: float
) -> list[FencedBackend]:
    """End every migration backend on this database other than ``connection``'s; wait them out.

    ``connection`` must be in autocommit mode (the lock's own connection is). Returns what was
    ended (empty: nothing was running). Raises :class:`FenceFailed` when a backend may not be
    ended by this user or is still there after ``wait_seconds``.
    """
    if identity.family == "postgresql":
        backends = _postgresql_backends(connection, identity)
    elif identity.family == "mysql":
        backends = _mysql_backends(connection, identity)
    else:
        return []  # SQLite: the migration runs in this process; the file lock dies with it
    return fence_policy.end_and_wait(backends, identity, wait_seconds, log)


# --------------------------------------------------------------------------- PostgreSQL

_PG_TAGGED = sa.text(
    "SELECT pid, coalesce(query, '') FROM pg_stat_activity "
    "WHERE datname = current_database() AND application_name = :tag "
    "AND pid <> pg_backend_pid()"
)
_PG_ALIVE = sa.text("SELECT pid FROM pg_stat_activity WHERE pid = ANY(:pids)")


def _postgresql_backends(
    connection: sa.Connection, identity: DatabaseIdentity
) -> fence_policy.Backends:
    def tagged() -> list[FencedBackend]:
        rows = connection.execute(_PG_TAGGED, {"tag": MIGRATION_APPLICATION_NAME}).all()
        return [FencedBackend(int(pid), _clip(query)) for pid, query in rows]

    def alive(pids: set[int]) -> set[int]:
        found = connection.execute(_PG_ALIVE, {"pids": sorted(pids)}).scalars()
        return {int(pid) for pid in found}

    return fence_policy.Backends(
        tagged, lambda backend: _pg_terminate(connection, identity, backend), alive
    )


def _pg_terminate(
    connection: sa.Connection, identity: DatabaseIdentity, backend: FencedBackend
) -> None:
    query = sa.text("SELECT pg_terminate_backend(:pid)")
    try:
        connection.execute(query, {"pid": backend.backend_id})
    except exc.DBAPIError as error:
        if getattr(error.orig, "sqlstate", None) != _PG_INSUFFICIENT_PRIVILEGE:
            raise
        user = connection.execute(sa.text("SELECT current_user")).scalar_one()
        raise lock_words.pg_may_not_end(backend, identity, str(user)) from None


# --------------------------------------------------------------------------- MySQL / MariaDB


def _mysql_backends(connection: sa.Connection, identity: DatabaseIdentity) -> fence_policy.Backends:
    name = run_lock_name(identity)

    def tagged() -> list[FencedBackend]:
        holder = _mysql_holder(connection, name)
        return [] if holder is None else [FencedBackend(holder, _mysql_query(connection, holder))]

    def alive(ids: set[int]) -> set[int]:
        holder = _mysql_holder(connection, name)  # R held by another thread: ours has ended
        return {backend_id for backend_id in ids if backend_id == holder}

    return fence_policy.Backends(
        tagged, lambda backend: _mysql_kill(connection, identity, backend), alive
    )


def _mysql_holder(connection: sa.Connection, name: str) -> int | None:
    holder: Any = connection.execute(sa.text("SELECT IS_USED_LOCK(:name)"), {"name": name}).scalar()
    return None if holder is None else int(holder)


def _mysql_query(connection: sa.Connection, connection_id: int) -> str:
    try:
        info = connection.execute(
            sa.text("SELECT INFO FROM information_schema.PROCESSLIST WHERE ID = :id"),
            {"id": connection_id},
        ).scalar()
    except exc.DBAPIError:
        return ""
    return _clip(info or "")


def _mysql_kill(
    connection: sa.Connection, identity: DatabaseIdentity, backend: FencedBackend
) -> None:
    try:
        connection.exec_driver_sql(f"KILL {int(backend.backend_id)}")
    except exc.DBAPIError as error:
        code = getattr(error.orig, "args", (None,))[0]
        if code == _MYSQL_UNKNOWN_THREAD:
            return  # it ended on its own meanwhile
        if code not in _MYSQL_NOT_OWNER:
            raise
        user = connection.execute(sa.text("SELECT CURRENT_USER()")).scalar_one()
        raise FenceFailed(
            f"{backend.describe()} is still working on {identity}, and user {user} may not "
            f"end it (it belongs to another user). Migrating now would run two migrations at "
            f"once, so this run stops. Grant the migration user CONNECTION ADMIN (MariaDB "
            f"10.5+, MySQL 8) or PROCESS+SUPER, or end it by hand: KILL {backend.backend_id}"
        ) from None


# --------------------------------------------------------------------------- shared
