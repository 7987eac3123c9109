"""The lock's and the fence's errors and words, free of SQLAlchemy and drivers.

:mod:`lockstep.pod.lock` and :mod:`lockstep.pod.fence` (through SQLAlchemy, every engine) and
the PostgreSQL fast path (:mod:`lockstep.pod.pg_direct`, psycopg only) raise the same errors
with the same messages; they are worded once, here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Final

from lockstep import errors
from lockstep.db_identity import DatabaseIdentity

QUERY_CHARS: Final = 120


class LockTimeout(errors.LockstepError):
    reason = "LockTimeout"

    def __init__(self, message: str, *, identity: DatabaseIdentity, waited_seconds: float) -> None:
        super().__init__(message)
        self.identity = identity
        self.waited_seconds = waited_seconds


def lock_timeout(identity: DatabaseIdentity, started: float, how: str, holder: str) -> LockTimeout:
    waited = time.monotonic() - started
    return LockTimeout(
        f"timed out after {waited:.1f}s waiting for the migration lock on {identity} "
        f"({how}); {holder}. Another migration is probably still running on this "
        f"database: wait for it to finish or raise spec.timeouts.lockWaitSeconds. "
        f"If nothing is migrating, end the session that holds the lock.",
        identity=identity,
        waited_seconds=waited,
    )


def pg_holder(row: tuple[object, object, object] | None) -> str:
    """Who holds the advisory lock, from a row of :data:`PG_HOLDER_QUERY`'s columns."""
    if row is None:
        return "its holder is not visible to this user"
    pid, application, client = row
    return (
        f"it is held by PostgreSQL backend pid {pid} (application {application or '?'!r}, "
        f"client {client or 'local socket'}; to end it: SELECT pg_terminate_backend({pid}))"
    )


def advisory_key_halves(key: int) -> tuple[int, int]:
    """A bigint advisory key as pg_locks shows it: classid (high half), objid (low half)."""
    unsigned = key & 0xFFFFFFFFFFFFFFFF
    return unsigned >> 32, unsigned & 0xFFFFFFFF


class FenceFailed(errors.LockstepError):
    """A backend of an earlier run could not be ended, or did not go in time."""

    reason = "FenceFailed"


@dataclass(frozen=True)
class FencedBackend:
    """A backend of an earlier run that the fence ended: who, and what it was doing."""

    backend_id: int
    query: str  # what it was running, clipped; "" when the server does not show it

    def describe(self) -> str:
        doing = f" that was still running {self.query!r}" if self.query else ""
        return f"backend {self.backend_id} of an earlier run{doing}"


def describe(fenced: list[FencedBackend]) -> str:
    """One sentence for the log and the result: what was ended, and what the server did."""
    ended = "; ".join(backend.describe() for backend in fenced)
    return (
        f"terminated {ended}; the server rolled back its open transaction (on MySQL/MariaDB, "
        f"statements it had finished stay committed)"
    )


def pg_may_not_end(backend: FencedBackend, identity: DatabaseIdentity, user: str) -> FenceFailed:
    return FenceFailed(
        f"{backend.describe()} is still working on {identity}, and role {user!r} may not "
        f"end it (it belongs to another role). Migrating now would run two migrations at "
        f"once, so this run stops. Grant the migration role the right to end it "
        f'(GRANT pg_signal_backend TO "{user}"; a superuser\'s backend needs a superuser), '
        f"or end it by hand: SELECT pg_terminate_backend({backend.backend_id})"
    )


def another_run(identity: DatabaseIdentity, rows: list[tuple[int, str]]) -> FenceFailed:
    """A tagged backend found on a new migration connection (PostgreSQL)."""
    others = "; ".join(FencedBackend(int(pid), clip(q)).describe() for pid, q in rows)
    return FenceFailed(
        f"another migration is working on {identity} ({others}) although this run holds "
        f"the migration lock: it lost its lock holder and goes on. This run stops rather "
        f"than migrate beside it; it is safe to run again once that one has ended"
    )


def not_gone(
    identity: DatabaseIdentity, remaining: set[int], wait_seconds: float, how: str
) -> FenceFailed:
    ids = ", ".join(str(backend_id) for backend_id in sorted(remaining))
    by_hand = "; ".join(how.format(backend_id) for backend_id in sorted(remaining))
    return FenceFailed(
        f"backend(s) {ids} of an earlier run on {identity} were told to end but are still "
        f"there after {wait_seconds:.0f}s (the server may still be rolling back a large "
        f"transaction). Migrating now would run two migrations at once, so this run stops; it "
        f"is safe to run again later. To check or end them by hand: {by_hand}"
    )


def clip(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= QUERY_CHARS else line[: QUERY_CHARS - 3] + "..."
