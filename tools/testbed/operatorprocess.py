"""The operator under test, run as a real `lockstep operator` process against the test cluster
(e2e tests and the benchmarks)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from testbed import localhost

REPO = Path(__file__).resolve().parents[2]
LOCKSTEP = Path(sys.executable).parent / "lockstep"


class OperatorProcess:
    """One replica of the operator: start, stop (SIGTERM), kill (SIGKILL), read its log."""

    def __init__(
        self,
        kubeconfig: Path,
        log_dir: Path,
        lease_namespace: str,
        name: str = "operator",
        extra_args: tuple[str, ...] = (),
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.log_file = log_dir / f"{name}.log"
        self.lease_namespace = lease_namespace
        self.extra_args = extra_args
        self.extra_env = extra_env or {}
        self.port = localhost.free_port()
        self.webhook_port = localhost.free_port()
        self.process: subprocess.Popen[bytes] | None = None
        log_dir.mkdir(parents=True, exist_ok=True)

    def start(self) -> None:
        argv = [
            str(LOCKSTEP),
            "operator",
            "--kubeconfig",
            str(self.kubeconfig),
            "--lease-namespace",
            self.lease_namespace,
            "--http-port",
            str(self.port),
            # Off-cluster, the API server reaches the gate webhook at this URL.
            "--webhook-port",
            str(self.webhook_port),
            "--webhook-url",
            f"https://127.0.0.1:{self.webhook_port}",
            *self.extra_args,
        ]
        # The e2e tests inspect the Jobs of every attempt: the test bed keeps them all unless a
        # test asks for the operator's retention (LOCKSTEP_KEEP_FINISHED_JOBS in extra_env).
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "LOCKSTEP_KEEP_FINISHED_JOBS": "-1",
            **self.extra_env,
        }
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO
            )
        self.wait_healthy()

    def wait_healthy(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(
                    f"operator exited with {self.process.returncode}:\n{self.log()}"
                )
            try:
                # /readyz: the gate webhook serves and is registered, not only the process is up.
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=1):
                    return
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"operator not healthy after {timeout}s:\n{self.log()}")

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as reply:
            text: str = reply.read().decode()
            return text

    def is_leader(self) -> bool:
        return "\nlockstep_leader 1.0" in "\n" + self.metrics()

    def wait_leader(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.is_leader():
                return
            time.sleep(0.2)
        raise AssertionError(f"operator did not become leader in {timeout}s:\n{self.log()}")

    def stop(self, timeout: float = 20.0) -> int | None:
        if self.process is None:
            return None
        localhost.terminate(self.process, timeout)
        code = self.process.returncode
        self.process = None
        return code

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-20000:]
        except OSError:
            return ""
