"""`lockstep lock`: the native sidecar that holds the database's migration lock for its pod.

It runs as an init container with `restartPolicy: Always`, so Kubernetes starts it before the
migrate container and stops it after. Its startup probe (`lockstep lock --probe`) passes only once
the lock is held, so the migration cannot start before. If the pod dies, the database server drops
the lock with the connection.
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

from lockstep import constants, database
from lockstep.pod import lock

log = logging.getLogger("lockstep.lock")

HEARTBEAT_SECONDS = 5.0
EXIT_LOCK_TIMEOUT = constants.EXIT_LOCK_TIMEOUT
EXIT_CONNECTION_LOST = 4


def hold(url: str, wait_seconds: float, ready_file: Path) -> int:
    """Take the lock, announce it in `ready_file`, hold it until SIGTERM; return the exit code."""
    identity = database.identity_from_url(url)
    stop = threading.Event()
    _stop_on_signals(stop)
    engine = database.make_engine(url)
    try:
        with engine.connect() as connection:
            try:
                with lock.hold_advisory_lock(connection, identity, wait_seconds) as held:
                    ready_file.write_text(json.dumps({"waitSeconds": round(held.wait_seconds, 3)}))
                    waited = f"{held.wait_seconds:.1f}s"
                    print(f"holding the migration lock on {identity} (waited {waited})", flush=True)
                    return _hold_until(stop, connection, identity)
            except lock.LockTimeout as error:
                print(f"error (LockTimeout): {error}", flush=True)
                return EXIT_LOCK_TIMEOUT
    finally:
        ready_file.unlink(missing_ok=True)
        engine.dispose()


def probe(ready_file: Path) -> int:
    """Startup probe: 0 once the lock is held."""
    return 0 if ready_file.exists() else 1


def _hold_until(stop: threading.Event, connection: sa.Connection, identity: object) -> int:
    """Wait for SIGTERM; check the connection now and then, since the lock lives on it."""
    while not stop.wait(HEARTBEAT_SECONDS):
        if not _alive(connection):
            print(f"error: lost the connection to {identity}: the lock is gone", flush=True)
            return EXIT_CONNECTION_LOST
    print("stopping: releasing the migration lock", flush=True)
    return 0


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
