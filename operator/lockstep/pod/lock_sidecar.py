"""`lockstep lock`: the native sidecar that holds the database's migration lock for its pod.

It runs as an init container with `restartPolicy: Always`, so Kubernetes starts it before the
migrate container and stops it after. Its startup probe (`lockstep lock --probe`) passes only once
the lock is held, so the migration cannot start before. If the pod dies, the database server drops
the lock with the connection.

The lock alone does not keep two migrations apart: when this process dies, the server frees the
lock at once while the migration's own backend may still be executing a statement. So, with the
lock held, the sidecar fences (:mod:`lockstep.pod.fence`) twice: before it announces the lock
(a backend of an earlier, killed run is ended and waited out), and on SIGTERM before it releases
the lock (its own run's backends are ended and waited out, within :data:`STOP_FENCE_SECONDS`).
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from pathlib import Path
from types import FrameType

import sqlalchemy as sa
from sqlalchemy import exc

from lockstep import constants, database, url_secrets
from lockstep.database import DatabaseIdentity
from lockstep.pod import fence, lock

log = logging.getLogger("lockstep.lock")

HEARTBEAT_SECONDS = 5.0
EXIT_LOCK_TIMEOUT = constants.EXIT_LOCK_TIMEOUT
EXIT_CONNECTION_LOST = 4
EXIT_FENCE_FAILED = 5
# The fence's wait: at start at least this long (more when the lock wait is longer); on SIGTERM
# this long, within Kubernetes' default 30 s grace period.
MIN_FENCE_SECONDS = 10.0
STOP_FENCE_SECONDS = 20.0


def hold(url: str, wait_seconds: float, ready_file: Path) -> int:
    """Take the lock, announce it in `ready_file`, hold it until SIGTERM; return the exit code."""
    identity = database.identity_from_url(url)
    stop = threading.Event()
    _stop_on_signals(stop)
    engine = database.make_engine(url)
    try:
        with database.connect(engine, url) as connection:
            try:
                with lock.hold_advisory_lock(connection, identity, wait_seconds) as held:
                    _fence(connection, identity, max(wait_seconds, MIN_FENCE_SECONDS))
                    ready_file.write_text(json.dumps({"waitSeconds": round(held.wait_seconds, 3)}))
                    waited = f"{held.wait_seconds:.1f}s"
                    print(f"holding the migration lock on {identity} (waited {waited})", flush=True)
                    return _hold_until(stop, connection, identity)
            except lock.LockTimeout as error:
                print(f"error (LockTimeout): {error}", flush=True)
                return EXIT_LOCK_TIMEOUT
            except fence.FenceFailed as error:
                print(f"error (FenceFailed): {error}", flush=True)
                return EXIT_FENCE_FAILED
            except exc.DBAPIError as error:
                print(f"error: the lock's connection to {identity} failed: {_said(error, url)}")
                return EXIT_CONNECTION_LOST
    finally:
        ready_file.unlink(missing_ok=True)
        engine.dispose()


def _hold_until(
    stop: threading.Event, connection: sa.Connection, identity: DatabaseIdentity
) -> int:
    """Wait for SIGTERM; check the connection now and then, since the lock lives on it."""
    while not stop.wait(HEARTBEAT_SECONDS):
        if not _alive(connection):
            print(f"error: lost the connection to {identity}: the lock is gone", flush=True)
            return EXIT_CONNECTION_LOST
    print("stopping: ending this run's migration backends before releasing the lock", flush=True)
    _fence(connection, identity, STOP_FENCE_SECONDS)
    print("stopping: releasing the migration lock", flush=True)
    return 0


def _fence(connection: sa.Connection, identity: DatabaseIdentity, seconds: float) -> None:
    """End tagged migration backends on the database other than this one; wait them out."""
    fenced = fence.fence_earlier_runs(connection, identity, seconds)
    if fenced:
        print(f"fence: {fence.describe(fenced)}", flush=True)
    else:
        print(f"fence: no migration backend is running on {identity}", flush=True)


def _said(error: exc.DBAPIError, url: str) -> str:
    lines = str(error.orig).strip().splitlines()
    return url_secrets.scrub(lines[0] if lines else type(error.orig).__name__, url)


def _alive(connection: sa.Connection) -> bool:
    if connection.dialect.name == "sqlite":
        return True  # the file lock lives in this process
    try:
        connection.execute(sa.text("SELECT 1"))
    except exc.DBAPIError:
        return False
    return True


def _stop_on_signals(stop: threading.Event) -> None:
    def handler(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
