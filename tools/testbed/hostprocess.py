"""A controller run as a host process for the e2e suite: its log file, its health URL, its stop.

The GitOps controllers (Flux's, Argo CD's) are started the same way: output into a log file of
the test session's state directory, ready once an HTTP health endpoint answers, stopped with the
test bed's terminate (SIGTERM, then SIGKILL). This class is that part; each test bed module adds
how its controller is invoked.
"""

from __future__ import annotations

import subprocess
import time
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path

from testbed import localhost

LOG_TAIL_CHARS = 20000


class HostProcess:
    """One process with a log file; `process` is None until started and after stopped."""

    def __init__(self, name: str, log_file: Path) -> None:
        self.name = name
        self.log_file = log_file
        self.process: subprocess.Popen[bytes] | None = None

    def spawn(self, argv: list[str], env: Mapping[str, str]) -> None:
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, env=dict(env)
            )

    def wait_http_ok(
        self,
        port: int,
        path: str,
        timeout: float,
        on_exit: Callable[[str], None] | None = None,
    ) -> None:
        """Wait until http://127.0.0.1:<port><path> answers 2xx. If the process exits first,
        `on_exit(log)` may raise a more precise error; a RuntimeError with the log follows."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                log = self.log()
                if on_exit is not None:
                    on_exit(log)
                raise RuntimeError(f"{self.name} exited ({self.process.returncode}):\n{log}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1):
                    return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"{self.name} not ready after {timeout}s:\n{self.log()}")

    def stop(self) -> None:
        if self.process is not None:
            localhost.terminate(self.process, 20.0)
            self.process = None

    def log(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-LOG_TAIL_CHARS:]
        except OSError:
            return ""
