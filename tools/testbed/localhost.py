"""What every part of the test bed needs from the local machine: a free TCP port on 127.0.0.1,
a state directory of this checkout's own, and a child process stopped politely (SIGTERM, then
SIGKILL after a grace period)."""

from __future__ import annotations

import hashlib
import signal
import socket
import subprocess
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def checkout_state_dir(kind: str) -> Path:
    """Where this checkout's `kind` of running state (cluster, db, podagent) lives by default.

    Per checkout, so two clones on one machine (or a demo and a test run of two clones) never
    share a control plane, a database or a pod agent: ``/tmp/lockstep-<folder>-<hash>/<kind>``.
    Build caches (``~/.cache/lockstep``) stay shared: they are keyed by version and locked.
    """
    digest = hashlib.sha256(str(REPO).encode()).hexdigest()[:8]
    return Path("/tmp") / f"lockstep-{REPO.name}-{digest}" / kind  # noqa: S108 - private dir


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def terminate(process: subprocess.Popen[Any], timeout: float) -> None:
    """SIGTERM ``process`` if it still runs; SIGKILL it if it is not gone after ``timeout``."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
