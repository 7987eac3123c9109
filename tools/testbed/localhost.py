"""What every part of the test bed needs from the local machine: a free TCP port on 127.0.0.1,
and a child process stopped politely (SIGTERM, then SIGKILL after a grace period)."""

from __future__ import annotations

import signal
import socket
import subprocess
from typing import Any


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
