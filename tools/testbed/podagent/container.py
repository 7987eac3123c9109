"""One container of a pod, run as a local process group by the testbed pod agent."""

from __future__ import annotations

import contextlib
import enum
import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..kubeapi import JSON, Endpoint, KubeAPI, now_rfc3339
from .config import PodFacts, Volume, container_env, expand
from .images import ImageProfile
from .logs import read_tail
from .probes import ProbeState
from .volumes import container_mounts

log = logging.getLogger("testbed.podcontainer")

LAUNCHER = Path(__file__).with_name("exec.py")
START_ERROR_EXIT = 128  # exec.py's exit code when the container could not start
TERMINATION_MESSAGE_LIMIT = 4096
FALLBACK_LOG_LINES = 80
FALLBACK_LOG_BYTES = 2048
BACKOFF_INITIAL_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 20.0
BACKOFF_RESET_AFTER_SECONDS = 60.0


def process_start_time(pid: int) -> str | None:
    """The kernel's start time of a process (to tell a live pid from a reused one)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


class Role(enum.Enum):
    INIT = "init"  # regular init container: runs to completion, in order
    SIDECAR = "sidecar"  # init container with restartPolicy Always: keeps running
    MAIN = "main"


@dataclass(frozen=True)
class ContainerPaths:
    log: Path
    termination: Path
    launch: Path
    error: Path

    @classmethod
    def under(cls, pod_dir: Path, name: str) -> ContainerPaths:
        return cls(
            log=pod_dir / "logs" / f"{name}.log",
            termination=pod_dir / "termination" / name,
            launch=pod_dir / "launch" / f"{name}.json",
            error=pod_dir / "launch" / f"{name}.error",
        )

    def create(self) -> None:
        for path in (self.log, self.termination, self.launch):
            path.parent.mkdir(parents=True, exist_ok=True)


class ContainerRun:
    """Process, state and status of one container across its restarts."""

    def __init__(self, spec: JSON, role: Role, pod_dir: Path, pod_uid: str) -> None:
        self.spec = spec
        self.name: str = spec["name"]
        self.role = role
        self.paths = ContainerPaths.under(pod_dir, self.name)
        self.pod_uid = pod_uid
        self.image: ImageProfile | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.restart_count = 0
        self.ever_started = False
        self.started_at = ""
        self.started_mono = 0.0
        self.container_id = ""
        self.started = False  # startupProbe passed (or none)
        self.ready = False
        self.terminated: JSON | None = None
        self.last_terminated: JSON | None = None
        self.waiting: tuple[str, str] = ("ContainerCreating", "")
        self.start_at: float | None = None  # when to (re)start; None = not scheduled
        self.backoff = 0.0
        self.kill_at: float | None = None
        self.log_offset = 0
        self.env: dict[str, str] = {}
        self.working_dir = "/"
        self.probes: dict[str, ProbeState] = {}

    # ---------------------------------------------------------------- state

    @property
    def running(self) -> bool:
        return self.proc is not None

    @property
    def completed(self) -> bool:
        """Exited 0 and not going to run again (what the next init container waits for)."""
        return (
            not self.running
            and self.start_at is None
            and self.terminated is not None
            and self.terminated["exitCode"] == 0
        )

    @property
    def finished(self) -> bool:
        """Ran at least once, is not running and will not be restarted."""
        return self.ever_started and not self.running and self.start_at is None

    def schedule(self, at: float) -> None:
        self.start_at = at

    def schedule_restart(self, now: float) -> None:
        """Restart after a growing back-off (reset when the last run was long enough)."""
        ran_for = now - self.started_mono
        if ran_for >= BACKOFF_RESET_AFTER_SECONDS or self.backoff == 0:
            self.backoff = BACKOFF_INITIAL_SECONDS
        else:
            self.backoff = min(self.backoff * 2, BACKOFF_MAX_SECONDS)
        self.start_at = now + self.backoff
        self.waiting = (
            "CrashLoopBackOff",
            f"back-off {self.backoff:g}s restarting failed container={self.name}",
        )

    # ---------------------------------------------------------------- process

    def launch(self, launch_spec: JSON, now: float) -> None:
        """Start the container process (through exec.py) in its own session."""
        self.paths.create()
        self.paths.termination.write_bytes(b"")
        self.paths.error.unlink(missing_ok=True)
        self.paths.launch.write_text(json.dumps(launch_spec))
        self.env = dict(launch_spec["env"])
        self.working_dir = launch_spec["workingDir"]
        if self.ever_started:
            self.restart_count += 1
            self.last_terminated = self.terminated
        self.terminated = None
        with self.paths.log.open("ab") as log_file:
            self.log_offset = log_file.tell()
            self.proc = subprocess.Popen(
                [sys.executable, "-I", "-S", str(LAUNCHER), "run", str(self.paths.launch)],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd="/",
                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
                start_new_session=True,
            )
        self.ever_started = True
        self.start_at = None
        self.kill_at = None
        self.started_at = now_rfc3339()
        self.started_mono = now
        self.started = False
        self.ready = False
        seed = f"{self.pod_uid}/{self.name}/{self.restart_count}/{self.proc.pid}"
        self.container_id = "testbed://" + hashlib.sha256(seed.encode()).hexdigest()
        self.probes = {
            kind: ProbeState.create(self.spec[f"{kind}Probe"], now)
            for kind in ("startup", "liveness", "readiness")
            if self.spec.get(f"{kind}Probe")
        }

    def pid_record(self) -> list[Any] | None:
        if self.proc is None:
            return None
        return [self.proc.pid, process_start_time(self.proc.pid)]

    def _signal_group(self, sig: signal.Signals) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    def stop(self, grace: float, now: float) -> None:
        """SIGTERM to the main process now, SIGKILL to all when the grace period is over.

        Like a container runtime, only the container's main process gets the
        SIGTERM; when it exits, the rest of its process group is killed (see poll).
        """
        if self.proc is None or self.kill_at is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(self.proc.pid, signal.SIGTERM)
        self.kill_at = now + max(grace, 0.0)

    def enforce_kill(self, now: float) -> None:
        if self.kill_at is not None and now >= self.kill_at:
            self._signal_group(signal.SIGKILL)

    def kill(self) -> None:
        self._signal_group(signal.SIGKILL)

    def poll(self) -> JSON | None:
        """Reap the process if it exited; return its terminated state."""
        if self.proc is None:
            return None
        code = self.proc.poll()
        if code is None:
            return None
        # Like a container's PID 1 exiting: whatever it left behind goes too.
        self._signal_group(signal.SIGKILL)
        self.proc = None
        self.kill_at = None
        self.started = False
        self.ready = False
        self.terminated = self._terminated_state(code)
        return self.terminated

    def _terminated_state(self, code: int) -> JSON:
        state: JSON = {
            "startedAt": self.started_at,
            "finishedAt": now_rfc3339(),
            "containerID": self.container_id,
        }
        start_error = self._start_error() if code == START_ERROR_EXIT else ""
        if code < 0:
            state.update(exitCode=128 - code, signal=-code, reason="Error")
        elif start_error:
            state.update(exitCode=code, reason="StartError")
        else:
            state.update(exitCode=code, reason="Completed" if code == 0 else "Error")
        message = start_error or self._termination_message(state["exitCode"])
        if message:
            state["message"] = message
        return state

    def _start_error(self) -> str:
        try:
            return self.paths.error.read_text().strip()
        except OSError:
            return ""

    def _termination_message(self, exit_code: int) -> str:
        try:
            with self.paths.termination.open("rb") as handle:
                data = handle.read(TERMINATION_MESSAGE_LIMIT)
        except OSError:
            data = b""
        policy = self.spec.get("terminationMessagePolicy") or "File"
        if not data.strip() and exit_code != 0 and policy == "FallbackToLogsOnError":
            tail = read_tail(self.paths.log, lines=FALLBACK_LOG_LINES, start=self.log_offset)
            data = tail[-FALLBACK_LOG_BYTES:]
        return data.decode("utf-8", "replace")

    def run_exec(self, argv: list[str], timeout: float) -> tuple[bool, str]:
        """Run a command inside the running container (mount/UTS namespace, env, cwd)."""
        if self.proc is None:
            return False, "container is not running"
        spec_file = self.paths.launch.with_suffix(f".exec-{time.monotonic_ns()}.json")
        spec_file.write_text(
            json.dumps({"argv": argv, "env": self.env, "workingDir": self.working_dir})
        )
        try:
            result = subprocess.run(
                [
                    sys.executable,
                    "-I",
                    "-S",
                    str(LAUNCHER),
                    "exec",
                    str(self.proc.pid),
                    str(spec_file),
                ],
                capture_output=True,
                timeout=timeout,
                check=False,
                start_new_session=True,
            )
        except subprocess.TimeoutExpired:
            return False, f"command timed out after {timeout:g}s"
        finally:
            spec_file.unlink(missing_ok=True)
        output = (result.stdout + result.stderr).decode("utf-8", "replace")[-1024:]
        return result.returncode == 0, output

    # ---------------------------------------------------------------- status

    def _ready_for_status(self) -> bool:
        if self.role is Role.INIT:
            return self.completed
        return self.running and self.ready

    def _state(self) -> tuple[JSON, JSON | None]:
        """(state, lastState) as the kubelet reports them."""
        if self.proc is not None:
            return {"running": {"startedAt": self.started_at}}, self.last_terminated
        if self.terminated is not None and self.start_at is None:
            return {"terminated": self.terminated}, self.last_terminated
        reason, message = self.waiting
        waiting = {"reason": reason, **({"message": message} if message else {})}
        return {"waiting": waiting}, self.terminated or self.last_terminated

    def status(self) -> JSON:
        state, last_state = self._state()
        status: JSON = {
            "name": self.name,
            "image": self.spec.get("image", ""),
            "imageID": self.image.image_id if (self.image and self.ever_started) else "",
            "ready": self._ready_for_status(),
            "started": self.running and self.started,
            "restartCount": self.restart_count,
            "state": state,
            "lastState": {"terminated": last_state} if last_state else {},
        }
        if self.container_id:
            status["containerID"] = self.container_id
        return status


def launch_spec(
    run: ContainerRun,
    pod: JSON,
    volumes: dict[str, Volume],
    facts: PodFacts,
    api: KubeAPI,
    apiserver: Endpoint,
) -> JSON:
    """What exec.py needs to start ``run``: argv, env, working directory, hostname, mounts.

    Raises ConfigError, VolumeError or an API error while what the container refers to is
    missing (the runtime retries).
    """
    assert run.image is not None
    env = container_env(api, pod, run.spec, run.image, facts, apiserver)
    argv = [
        expand(str(a), env) for a in run.image.argv(run.spec.get("command"), run.spec.get("args"))
    ]
    mounts = container_mounts(run.spec, volumes, env, run.paths.termination)
    hostname = pod["spec"].get("hostname") or pod["metadata"]["name"]
    return {
        "argv": argv,
        "env": env,
        "workingDir": run.spec.get("workingDir") or run.image.working_dir,
        "hostname": hostname[:63],
        "mounts": mounts,
        "errorFile": str(run.paths.error),
    }
