"""The pod agent as a background process of a test session (pytest fixtures, the bench, the
demo): start it or reuse a live one, stop it, refuse a checkout that pods could not see."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .. import localhost
from .container import process_start_time
from .images import DEFAULT_IMAGES_FILE, REPO_ROOT
from .node import NODE_NAME

log = logging.getLogger("testbed.podagent")

TOOLS_DIR = Path(__file__).resolve().parents[2]


@dataclass
class AgentProcess:
    """A pod agent in the background (see :func:`start_background`).

    ``process`` is None when the agent belongs to another live session (or
    was started by hand): :meth:`stop` then leaves it running.
    """

    process: subprocess.Popen[bytes] | None
    state_dir: Path
    log_file: Path

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 20.0) -> None:
        if self.process is not None:
            localhost.terminate(self.process, timeout)


@dataclass(frozen=True)
class RunningAgent:
    """What ``agent.pid`` says about the agent running on a state directory."""

    pid: int
    owner: int
    owner_started: str

    @classmethod
    def read(cls, state_dir: Path) -> RunningAgent | None:
        try:
            pid, started, owner, owner_started = (state_dir / "agent.pid").read_text().split()
        except (OSError, ValueError):
            return None
        if process_start_time(int(pid)) != started:
            return None  # not running any more
        return cls(int(pid), int(owner), owner_started)

    @property
    def orphaned(self) -> bool:
        """Its owner (a test session) is gone; the agent exits by itself soon."""
        return bool(self.owner) and process_start_time(self.owner) != self.owner_started

    def stop(self, timeout: float = 20.0) -> None:
        started = process_start_time(self.pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while process_start_time(self.pid) == started and time.monotonic() < deadline:
            time.sleep(0.2)
        if process_start_time(self.pid) == started:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)


def refuse_repository_under_tmp(repo: Path = REPO_ROOT) -> None:
    """Pods get an emptyDir over /tmp, which would hide a checkout there (and its .venv, which
    stands in for the Lockstep image): say so at once instead of failing every pod."""
    if repo.resolve().is_relative_to("/tmp"):  # noqa: S108 - the path pods mount over
        raise RuntimeError(
            f"the repository is at {repo}, under /tmp: pods of the test bed mount an emptyDir "
            "over /tmp, which hides it from their containers. Clone it elsewhere (e.g. ~/lockstep)"
        )


def start_background(
    kubeconfig: str | Path,
    state_dir: str | Path,
    *,
    node_name: str = NODE_NAME,
    images: str | Path = DEFAULT_IMAGES_FILE,
    ready_timeout: float = 60.0,
) -> AgentProcess:
    """Run ``python -m testbed.podagent`` in the background; return once it is ready.

    The agent exits by itself when the calling process does. An agent already
    running on ``state_dir`` for another live session (or started by hand) is
    reused, not replaced; one whose session died is stopped first.
    """
    refuse_repository_under_tmp()
    state = Path(state_dir)
    state.mkdir(parents=True, exist_ok=True)
    ready_file = state / "agent.ready"
    log_file = state / "agent.log"
    existing = RunningAgent.read(state)
    if existing is not None and not existing.orphaned and _ready_pid(ready_file) == existing.pid:
        log.info("reusing the pod agent %d on %s", existing.pid, state)
        return AgentProcess(None, state, log_file)
    if existing is not None:
        existing.stop()
    ready_file.unlink(missing_ok=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TOOLS_DIR), env.get("PYTHONPATH")]))
    argv = [
        sys.executable, "-m", "testbed.podagent",
        "--kubeconfig", str(kubeconfig), "--state-dir", str(state),
        "--node-name", node_name, "--images", str(images), "--owner-pid", str(os.getpid()),
    ]  # fmt: skip
    with log_file.open("ab") as output:
        process = subprocess.Popen(
            argv, stdout=output, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    agent = AgentProcess(process, state, log_file)
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"pod agent exited with {process.returncode}:\n{agent.log_tail()}")
        if _ready_pid(ready_file) == process.pid:
            return agent
        time.sleep(0.2)
    agent.stop()
    raise RuntimeError(f"pod agent not ready after {ready_timeout:.0f} s:\n{agent.log_tail()}")


def _ready_pid(ready_file: Path) -> int | None:
    try:
        return int(json.loads(ready_file.read_text())["pid"])
    except (OSError, ValueError, KeyError):
        return None
