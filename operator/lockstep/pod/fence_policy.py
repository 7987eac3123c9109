"""The fence's one policy: end every backend of an earlier run, then wait until they are gone.

Written once for every engine and driver: :mod:`lockstep.pod.fence` (SQLAlchemy; PostgreSQL,
MySQL/MariaDB) and the PostgreSQL fast path (:mod:`lockstep.pod.pg_direct`, psycopg) pass in
what differs as :class:`Backends`, three small callables on their connection: which tagged
backends there are, how to end one, and which are still there. The order, the bounded wait,
the log lines and the errors are decided here (docs/adr/0009-the-fence.md). No driver is
imported: the fast path must start without SQLAlchemy.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from lockstep.db_identity import DatabaseIdentity
from lockstep.pod import lock_words

POLL_SECONDS: Final = 0.1
# How the log names the ending, and the statement a person runs to end a backend by hand.
_ENDING: Final = {
    "postgresql": ("terminating", "SELECT pg_terminate_backend({})"),
    "mysql": ("killing", "KILL {}"),
}


@dataclass(frozen=True)
class Backends:
    """The earlier runs' backends on one database, as one driver reaches them."""

    tagged: Callable[[], list[lock_words.FencedBackend]]  # never the caller's own backend
    end: Callable[[lock_words.FencedBackend], None]  # raises FenceFailed where it may not
    alive: Callable[[set[int]], set[int]]  # which of these backend ids the server still has


def end_and_wait(
    backends: Backends, identity: DatabaseIdentity, wait_seconds: float, log: logging.Logger
) -> list[lock_words.FencedBackend]:
    """End every tagged backend, then poll until the server has removed them all.

    Returns what was ended (empty: nothing was running). Raises
    :class:`~lockstep.pod.lock_words.FenceFailed` when a backend may not be ended by this user
    (``backends.end`` raises it) or is still there after ``wait_seconds``. ``log`` is the
    caller's logger, so that the lines keep the logger name they always had.
    """
    deadline = time.monotonic() + max(0.0, wait_seconds)
    ending, by_hand = _ENDING[identity.family]
    fenced = backends.tagged()
    for backend in fenced:
        log.warning("fencing %s on %s: %s it", backend.describe(), identity, ending)
        backends.end(backend)
    remaining = {backend.backend_id for backend in fenced}
    while remaining:
        remaining = backends.alive(remaining)
        if remaining and time.monotonic() >= deadline:
            raise lock_words.not_gone(identity, remaining, wait_seconds, by_hand)
        if remaining:
            time.sleep(POLL_SECONDS)
    if fenced:
        log.warning("%s on %s", lock_words.describe(fenced), identity)
    return fenced
