"""The life of one pod on the testbed node: volumes, containers, probes, status.

Each pod has one thread. It runs the pod the way the kubelet does, in small
steps ("ticks"): reap exited processes, (re)start what is due, run probes,
enforce kill deadlines, and patch ``pods/status`` when anything changed.

Order: volumes; init containers one by one (a native sidecar -- an init
container with ``restartPolicy: Always`` -- counts as done once started,
i.e. once its startupProbe passed, and keeps running); then all main
containers. When the main containers are done (restartPolicy Never/OnFailure)
or the pod is deleted, main containers get SIGTERM, then sidecars, then
SIGKILL at the end of the grace period; the terminal status is written and a
deleted pod is removed with gracePeriodSeconds=0.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from collections.abc import Callable

from ..kubeapi import API_ERRORS, JSON, now_rfc3339
from . import probes
from .config import ConfigError, PodFacts, Volume, VolumeError
from .container import ContainerRun, Role, launch_spec
from .context import NodeContext, delete_pod_now
from .images import UnknownImageError
from .logs import LogSource
from .status import RETRY_SECONDS, StatusReport
from .volumes import materialize_volumes

log = logging.getLogger("testbed.podruntime")

TICK_SECONDS = 0.25
SIDECAR_MIN_GRACE_SECONDS = 2.0
DEFAULT_GRACE_SECONDS = 30
VOLUME_RETRY_ERRORS: tuple[type[BaseException], ...] = (VolumeError, *API_ERRORS)
CONFIG_RETRY_ERRORS: tuple[type[BaseException], ...] = (ConfigError, VolumeError, *API_ERRORS)


class PodRuntime:
    """Runs one pod; its public methods are called from the agent's watch thread."""

    def __init__(self, ctx: NodeContext, pod: JSON) -> None:
        self.ctx = ctx
        self.pod = pod
        meta = pod["metadata"]
        self.namespace: str = meta["namespace"]
        self.name: str = meta["name"]
        self.uid: str = meta["uid"]
        self.dir = ctx.pod_dir(self.uid)
        spec = pod["spec"]
        self.restart_policy: str = spec.get("restartPolicy") or "Always"
        self.inits = [
            ContainerRun(
                c,
                Role.SIDECAR if c.get("restartPolicy") == "Always" else Role.INIT,
                self.dir,
                self.uid,
            )
            for c in spec.get("initContainers") or []
        ]
        self.mains = [ContainerRun(c, Role.MAIN, self.dir, self.uid) for c in spec["containers"]]
        self.volumes: dict[str, Volume] = {}
        self.pod_ip = ""
        self.start_time = ""
        self._start_mono = 0.0
        self.sandbox_ready = False
        self.initialized = False
        self.final_phase = ""
        self.failed = False
        self.reason = ""
        self.message = ""
        self.stopping = False
        # Set from the watch thread:
        self.deleting = bool(meta.get("deletionTimestamp"))
        self.removed = False
        self.agent_stop = False
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._finalized = False
        self.report = StatusReport()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"pod-{self.uid[:8]}", daemon=True)

    # ---------------------------------------------------------------- API for the agent

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "pod.json").write_text(
            json.dumps({"namespace": self.namespace, "name": self.name, "uid": self.uid})
        )
        self.thread.start()

    def update(self, pod: JSON) -> None:
        """A newer version of the pod object (from the watch)."""
        delete_now = False
        with self._lock:
            self.pod = pod
            if pod["metadata"].get("deletionTimestamp"):
                self.deleting = True
                delete_now = self._finalized
        if delete_now:
            delete_pod_now(self.ctx.api, pod)
        self._wake.set()

    def remove(self) -> None:
        """The pod object is gone: kill everything, write nothing, clean up."""
        with self._lock:
            self.removed = True
            finalized = self._finalized
        self._wake.set()
        if finalized:
            self._cleanup()

    def shutdown(self) -> None:
        """The agent is stopping: kill the processes, leave the pod object alone."""
        self.agent_stop = True
        self._wake.set()

    def log_source(self, container: str) -> LogSource | None:
        for run in (*self.inits, *self.mains):
            if run.name == container:
                return LogSource(run.paths.log, lambda run=run: run.running)  # type: ignore[misc]
        return None

    def containers(self) -> list[ContainerRun]:
        return [*self.inits, *self.mains]

    @property
    def facts(self) -> PodFacts:
        return PodFacts(
            pod_ip=self.pod_ip,
            host_ip=self.ctx.host_ip,
            node_name=self.ctx.node_name,
            node_cpu=self.ctx.cpu,
            node_memory=self.ctx.memory,
        )

    # ---------------------------------------------------------------- lifecycle

    def _run(self) -> None:
        try:
            if self._prepare():
                self._run_containers()
        except Exception:
            log.exception("pod %s/%s: runtime error", self.namespace, self.name)
            self._fail("AgentError", "the testbed pod agent failed to run this pod (see its log)")
        finally:
            try:
                self._finish()
            finally:
                self.done.set()

    def _fail(self, reason: str, message: str) -> None:
        self.failed = True
        self.reason, self.message = reason, message

    def _should_stop(self) -> bool:
        return self.failed or self.deleting or self.removed or self.agent_stop

    def _sleep(self, seconds: float) -> None:
        self._wake.wait(seconds)
        self._wake.clear()

    def _wait_until(self, condition: Callable[[], bool]) -> bool:
        """Tick until ``condition`` holds (True) or the pod must stop (False)."""
        while True:
            self._tick()
            if self._should_stop():
                return False
            if condition():
                return True
            self._sleep(TICK_SECONDS)

    def _prepare(self) -> bool:
        if self._should_stop() or not self._resolve_images():
            return False
        hosted = bool(self.pod["spec"].get("hostNetwork"))
        self.pod_ip = self.ctx.host_ip if hosted else self.ctx.addresses.allocate(self.uid)
        self.start_time = now_rfc3339()
        self._start_mono = time.monotonic()
        while not self._should_stop():
            try:
                self.volumes = materialize_volumes(
                    self.ctx.api, self.pod, self.dir / "volumes", self.facts
                )
            except VOLUME_RETRY_ERRORS as error:
                self._set_waiting(
                    self.containers(), "ContainerCreating", f"MountVolume.SetUp failed: {error}"
                )
                self.report.push(self)
                self._sleep(RETRY_SECONDS)
                continue
            self.sandbox_ready = True
            waiting = "PodInitializing" if self.inits else "ContainerCreating"
            self._set_waiting(self.containers(), waiting, "")
            return True
        return False

    def _resolve_images(self) -> bool:
        errors = []
        for run in self.containers():
            try:
                run.image = self.ctx.images.resolve(run.spec.get("image") or "")
            except UnknownImageError as error:
                run.waiting = ("ErrImagePull", str(error))
                errors.append(str(error))
        if errors:
            self._fail("ErrImagePull", errors[0])
        return not errors

    def _set_waiting(self, runs: list[ContainerRun], reason: str, message: str) -> None:
        for run in runs:
            if not run.ever_started:
                run.waiting = (reason, message)

    def _run_containers(self) -> None:
        for run in self.inits:
            run.schedule(time.monotonic())
            if run.role is Role.SIDECAR:
                reached = self._wait_until(lambda run=run: run.running and run.started)  # type: ignore[misc]
            else:
                reached = self._wait_until(lambda run=run: run.completed)  # type: ignore[misc]
            if not reached:
                return
        self.initialized = True
        now = time.monotonic()
        for run in self.mains:
            run.schedule(now)
        self._wait_until(lambda: all(run.finished for run in self.mains))

    def _finish(self) -> None:
        if self.removed or self.agent_stop:
            self._kill_all()
        else:
            self.stopping = True
            self._terminate(self.grace_seconds())
            self.final_phase = self._terminal_phase()
            self._push_status_until_done()
        self._finalize()

    def _finalize(self) -> None:
        with self._lock:
            self._finalized = True
            deleting, removed, pod = self.deleting, self.removed, self.pod
        if removed:
            self._cleanup()
        elif deleting and not self.agent_stop:
            try:
                delete_pod_now(self.ctx.api, pod)
            except API_ERRORS as error:
                log.warning(
                    "pod %s/%s: delete failed (%s); retried on relist",
                    self.namespace,
                    self.name,
                    error,
                )

    def _cleanup(self) -> None:
        self.ctx.addresses.release(self.uid)
        shutil.rmtree(self.dir, ignore_errors=True)

    def grace_seconds(self) -> float:
        meta, spec = self.pod["metadata"], self.pod["spec"]
        if self.deleting and meta.get("deletionGracePeriodSeconds") is not None:
            return float(meta["deletionGracePeriodSeconds"])
        grace = spec.get("terminationGracePeriodSeconds")
        return float(DEFAULT_GRACE_SECONDS if grace is None else grace)

    def _terminal_phase(self) -> str:
        if self.failed:
            return "Failed"
        ok = all(
            run.terminated is not None and run.terminated["exitCode"] == 0 for run in self.mains
        )
        return "Succeeded" if ok else "Failed"

    # ---------------------------------------------------------------- termination

    def _terminate(self, grace: float) -> None:
        """SIGTERM main and regular init containers, then sidecars; SIGKILL at the deadline."""
        for run in self.containers():
            run.start_at = None
        deadline = time.monotonic() + grace
        first = [run for run in self.containers() if run.role is not Role.SIDECAR]
        self._stop_and_wait(first, deadline)
        remaining = max(deadline - time.monotonic(), min(grace, SIDECAR_MIN_GRACE_SECONDS))
        sidecars = [run for run in reversed(self.inits) if run.role is Role.SIDECAR]
        self._stop_and_wait(sidecars, time.monotonic() + remaining)

    def _stop_and_wait(self, runs: list[ContainerRun], deadline: float) -> None:
        now = time.monotonic()
        for run in runs:
            run.stop(deadline - now, now)
        hard_deadline = deadline + 10.0
        while any(run.running for run in runs) and time.monotonic() < hard_deadline:
            self._tick()
            if self.removed or self.agent_stop:
                self._kill_all()
                return
            self._sleep(0.1)

    def _kill_all(self) -> None:
        for run in self.containers():
            run.start_at = None
            run.kill()
        for _ in range(50):
            for run in self.containers():
                run.poll()
            if not any(run.running for run in self.containers()):
                return
            time.sleep(0.1)

    # ---------------------------------------------------------------- one tick

    def _tick(self) -> None:
        now = time.monotonic()
        for run in self.containers():
            state = run.poll()
            if state is not None:
                self._on_exit(run, state, now)
        if not self.stopping and not self._should_stop():
            self._check_deadline(now)
            for run in self.containers():
                if run.start_at is not None and run.start_at <= now:
                    self._start(run, now)
            for run in self.containers():
                if run.running:
                    probes.check(self, run, time.monotonic())
        for run in self.containers():
            run.enforce_kill(time.monotonic())
        self.report.push(self)

    def _on_exit(self, run: ContainerRun, state: JSON, now: float) -> None:
        code = state["exitCode"]
        log.info(
            "pod %s/%s: container %s exited with %s", self.namespace, self.name, run.name, code
        )
        if self.stopping or self._should_stop():
            return
        if run.role is Role.SIDECAR:
            restart = True
        elif run.role is Role.INIT:
            restart = code != 0 and self.restart_policy != "Never"
            if code != 0 and self.restart_policy == "Never":
                self._fail("", "")
        else:
            restart = self.restart_policy == "Always" or (
                self.restart_policy == "OnFailure" and code != 0
            )
        if restart:
            run.schedule_restart(now)

    def _check_deadline(self, now: float) -> None:
        deadline = self.pod["spec"].get("activeDeadlineSeconds")
        if deadline is not None and self._start_mono and now - self._start_mono > float(deadline):
            self._fail(
                "DeadlineExceeded", "Pod was active on the node longer than the specified deadline"
            )

    def _start(self, run: ContainerRun, now: float) -> None:
        try:
            spec = launch_spec(
                run, self.pod, self.volumes, self.facts, self.ctx.api, self.ctx.apiserver
            )
        except CONFIG_RETRY_ERRORS as error:
            run.waiting = ("CreateContainerConfigError", str(error))
            run.start_at = now + RETRY_SECONDS
            return
        run.launch(spec, now)
        log.info(
            "pod %s/%s: started container %s: %s", self.namespace, self.name, run.name, spec["argv"]
        )
        self._record_pids()

    def _record_pids(self) -> None:
        records = {run.name: run.pid_record() for run in self.containers() if run.running}
        (self.dir / "pids.json").write_text(json.dumps(records))

    def _push_status_until_done(self) -> None:
        """The terminal status must land (the Job controller waits for it)."""
        while not self.removed and not self.agent_stop:
            if self.report.push(self):
                return
            self._sleep(RETRY_SECONDS)
