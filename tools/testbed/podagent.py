"""The testbed pod agent: a stand-in kubelet (and scheduler) for e2e tests.

    PYTHONPATH=tools python -m testbed.podagent --kubeconfig K --state-dir D

It registers one Ready Node (``lockstep-node``, InternalIP 127.0.0.1) and
keeps its status and Lease fresh; binds every pending pod that has no
``spec.schedulingGates`` to it; runs each bound pod's containers as local
processes (see ``podruntime``) and reports their status; finishes deleted pods
and then removes them with gracePeriodSeconds=0; and serves container logs to
the apiserver over HTTPS (see ``podlogs``). Images map to local programs
through ``images.yaml`` (see ``podimages``).

Differences from a real node, on purpose:
- Processes run as the agent's user (root here): ``runAsUser``, ``fsGroup``,
  capabilities, seccomp and ``readOnlyRootFilesystem`` are accepted and
  ignored. Each container gets private mount and UTS namespaces (volumes at
  their mountPath, hostname = pod name) but shares the host's network, PID
  space and file system.
- Pod IPs are loopback addresses (127.1.x.y), one per pod. Two pods can only
  listen on the same port if they bind their own ``status.podIP`` (e.g. an
  env var from fieldRef status.podIP); binding 0.0.0.0 clashes. There is no
  kube-proxy: Service cluster IPs do not route (the apiserver reaches
  webhooks through endpoints, ``--enable-aggregator-routing``).
- Container restarts back off from 1 s to 20 s (the kubelet: 10 s to 5 min).
- Logs are plain files, appended across restarts (``previous``,
  ``timestamps``, ``sinceSeconds`` ignored); no exec/attach/port-forward.
- After an agent restart, pods that had started are marked Failed with reason
  ``AgentRestarted`` (their leftover processes are killed): the agent does
  not re-attach to processes.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import logging
import os
import platform
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from .kubeapi import API_ERRORS, JSON, ApiError, KubeAPI, pod_path
from .podcontainer import now_rfc3339, process_start_time
from .podimages import DEFAULT_IMAGES_FILE, REPO_ROOT, ImageCatalog
from .podlogs import LogServer, LogSource, ensure_certificate
from .podruntime import AddressPool, NodeContext, PodRuntime, delete_pod_now

log = logging.getLogger("testbed.podagent")

NODE_NAME = "lockstep-node"
HOST_IP = "127.0.0.1"
DEFAULT_STATE_DIR = Path("/tmp/lockstep-podagent")  # noqa: S108 - a documented default
HEARTBEAT_SECONDS = 10
LEASE_SECONDS = 40
WATCH_SECONDS = 60  # each watch ends after this; the agent then relists (a resync)
MAX_BACKOFF_SECONDS = 10.0
TERMINAL_PHASES = ("Succeeded", "Failed")
DEFAULT_SCHEDULER = "default-scheduler"
WATCH_RETRY_ERRORS: tuple[type[BaseException], ...] = (ValueError, *API_ERRORS)
TOOLS_DIR = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- node


def _memory_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 4 * 2**30


def _read(path: str, default: str) -> str:
    try:
        return Path(path).read_text().strip() or default
    except OSError:
        return default


def _os_image() -> str:
    for line in _read("/etc/os-release", "").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return "Linux"


def _architecture() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


class Node:
    """The Node object, its status heartbeat and its Lease."""

    def __init__(self, ctx: NodeContext, log_port: int) -> None:
        self.ctx = ctx
        self.log_port = log_port
        self.uid = ""
        self.since = now_rfc3339()
        self.kubelet_version = "v0.0.0-testbed"

    @property
    def path(self) -> str:
        return f"/api/v1/nodes/{self.ctx.node_name}"

    def register(self) -> None:
        """Create the Node if needed, then post a full status."""
        with contextlib.suppress(*API_ERRORS):
            self.kubelet_version = str(
                self.ctx.api.get("/version").get("gitVersion") or self.kubelet_version
            )
        try:
            node = self.ctx.api.get(self.path)
        except ApiError as error:
            if error.status != 404:
                raise
            node = self.ctx.api.post("/api/v1/nodes", self._object())
            log.info("registered node %s", self.ctx.node_name)
        self.uid = node["metadata"]["uid"]
        self.ctx.api.patch(f"{self.path}/status", {"status": self._status()})
        self.renew_lease()

    def _object(self) -> JSON:
        name = self.ctx.node_name
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "labels": {
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": _architecture(),
                    "lockstep.dev/testbed": "true",
                },
            },
            "spec": {},
        }

    def _resources(self) -> JSON:
        return {
            "cpu": str(self.ctx.cpu),
            "memory": f"{self.ctx.memory // 1024}Ki",
            "pods": "110",
            "ephemeral-storage": f"{shutil.disk_usage(self.ctx.state_dir).total // 1024}Ki",
        }

    def _conditions(self) -> list[JSON]:
        now = now_rfc3339()

        def condition(kind: str, status: str, reason: str, message: str) -> JSON:
            return {
                "type": kind,
                "status": status,
                "reason": reason,
                "message": message,
                "lastHeartbeatTime": now,
                "lastTransitionTime": self.since,
            }

        return [
            condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "testbed"),
            condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "testbed"),
            condition("PIDPressure", "False", "KubeletHasSufficientPID", "testbed"),
            condition("Ready", "True", "KubeletReady", "testbed pod agent is posting ready status"),
        ]

    def _status(self) -> JSON:
        return {
            "capacity": self._resources(),
            "allocatable": self._resources(),
            "conditions": self._conditions(),
            "addresses": [{"type": "InternalIP", "address": self.ctx.host_ip}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.log_port}},
            "nodeInfo": {
                "machineID": _read(
                    "/etc/machine-id", uuid.uuid5(uuid.NAMESPACE_DNS, "testbed").hex
                ),
                "systemUUID": str(uuid.uuid5(uuid.NAMESPACE_DNS, self.ctx.node_name)),
                "bootID": _read("/proc/sys/kernel/random/boot_id", ""),
                "kernelVersion": platform.release(),
                "osImage": _os_image(),
                "containerRuntimeVersion": "testbed://0.1.0",
                "kubeletVersion": self.kubelet_version,
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": _architecture(),
            },
        }

    def heartbeat(self) -> None:
        try:
            self.ctx.api.patch(
                f"{self.path}/status", {"status": {"conditions": self._conditions()}}
            )
        except ApiError as error:
            if error.status != 404:
                raise
            log.warning("node %s disappeared; registering it again", self.ctx.node_name)
            self.register()
            return
        self.renew_lease()

    def renew_lease(self) -> None:
        name = self.ctx.node_name
        path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{name}"
        renew = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        spec = {"holderIdentity": name, "leaseDurationSeconds": LEASE_SECONDS, "renewTime": renew}
        try:
            self.ctx.api.patch(path, {"spec": spec}, patch_type="merge")
        except ApiError as error:
            if error.status != 404:
                raise
            owner = {"apiVersion": "v1", "kind": "Node", "name": name, "uid": self.uid}
            lease = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {
                    "name": name,
                    "namespace": "kube-node-lease",
                    "ownerReferences": [owner],
                },
                "spec": spec,
            }
            self.ctx.api.post(
                "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", lease
            )

    def run_heartbeats(self, stop: threading.Event) -> None:
        while not stop.wait(HEARTBEAT_SECONDS):
            try:
                self.heartbeat()
            except API_ERRORS as error:
                log.warning("node heartbeat failed: %s", error)
            except Exception:
                log.exception("node heartbeat failed")


# ---------------------------------------------------------------- pods


def _looks_started(pod: JSON) -> bool:
    status = pod.get("status") or {}
    if status.get("startTime"):
        return True
    statuses = [
        *(status.get("initContainerStatuses") or []),
        *(status.get("containerStatuses") or []),
    ]
    return any(
        "running" in (s.get("state") or {}) or "terminated" in (s.get("state") or {})
        for s in statuses
    )


def kill_leftovers(pod_dir: Path) -> None:
    """Kill the process groups a previous agent started for this pod, if still alive."""
    try:
        records = json.loads((pod_dir / "pids.json").read_text())
    except (OSError, ValueError):
        return
    for record in records.values():
        if not record:
            continue
        pid, started = int(record[0]), record[1]
        if started and process_start_time(pid) == started:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)


def _adopted_container_status(status: JSON, message: str) -> JSON:
    state = status.get("state") or {}
    if "terminated" in state:
        return status
    started = (state.get("running") or {}).get("startedAt") or now_rfc3339()
    terminated = {
        "exitCode": 137,
        "reason": "AgentRestarted",
        "message": message,
        "startedAt": started,
        "finishedAt": now_rfc3339(),
    }
    return {**status, "ready": False, "started": False, "state": {"terminated": terminated}}


def adopted_status(pod: JSON) -> JSON:
    """Terminal status for a pod whose processes a previous agent run lost."""
    message = "the testbed pod agent restarted; this pod's processes are gone"
    old = pod.get("status") or {}
    now = now_rfc3339()
    conditions = [
        {
            "type": kind,
            "status": "False",
            "reason": "PodCompleted",
            "message": None,
            "lastTransitionTime": now,
        }
        for kind in ("Ready", "ContainersReady")
    ]
    status: JSON = {
        "phase": "Failed",
        "reason": "AgentRestarted",
        "message": message,
        "conditions": conditions,
    }
    for key, spec_key in (
        ("initContainerStatuses", "initContainers"),
        ("containerStatuses", "containers"),
    ):
        by_name = {s["name"]: s for s in old.get(key) or []}
        specs = pod["spec"].get(spec_key) or []
        if specs:
            status[key] = [
                _adopted_container_status(
                    by_name.get(c["name"])
                    or {
                        "name": c["name"],
                        "image": c.get("image", ""),
                        "imageID": "",
                        "ready": False,
                        "restartCount": 0,
                    },
                    message,
                )
                for c in specs
            ]
    return status


class PodAgent:
    """Watches pods: binds the unbound, runs the bound, finishes the deleted."""

    def __init__(self, ctx: NodeContext) -> None:
        self.ctx = ctx
        self.runtimes: dict[str, PodRuntime] = {}
        self.uids: dict[tuple[str, str], str] = {}  # (namespace, name) -> uid, pods bound here
        self.stop = threading.Event()

    # ---------------------------------------------------------------- watch loop

    def run(self, ready: threading.Event | None = None) -> None:
        """List, then watch; on any trouble (410, apiserver restart, ...) back off and relist."""
        backoff = 1.0
        while not self.stop.is_set():
            try:
                version = self.relist()
                if ready is not None:
                    ready.set()
                self.watch(version)
                backoff = 1.0
                continue
            except WATCH_RETRY_ERRORS as error:
                log.warning("pod watch: %s; retrying in %.0f s", error, backoff)
            except Exception:
                log.exception("pod watch failed; retrying in %.0f s", backoff)
            self.stop.wait(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)

    def relist(self) -> str:
        listing = self.ctx.api.get("/api/v1/pods")
        seen = set()
        for pod in listing.get("items") or []:
            seen.add(pod["metadata"]["uid"])
            self.observe(pod)
        for uid in [uid for uid in self.runtimes if uid not in seen]:
            self.forget(uid)
        return str(listing["metadata"]["resourceVersion"])

    def watch(self, version: str) -> None:
        for event in self.ctx.api.watch("/api/v1/pods", version, WATCH_SECONDS):
            if self.stop.is_set():
                return
            kind, obj = event.get("type"), event.get("object") or {}
            if kind == "ERROR":
                if obj.get("code") == 410:
                    log.info("pod watch expired (410); relisting")
                    return
                raise ValueError(f"watch error: {obj.get('message')}")
            if kind == "DELETED":
                self.forget(obj["metadata"]["uid"])
            elif kind in ("ADDED", "MODIFIED"):
                self.observe(obj)

    # ---------------------------------------------------------------- events

    def observe(self, pod: JSON) -> None:
        try:
            node = pod["spec"].get("nodeName")
            if not node:
                self._observe_unbound(pod)
            elif node == self.ctx.node_name:
                self._observe_bound(pod)
        except API_ERRORS as error:
            meta = pod["metadata"]
            log.warning(
                "pod %s/%s: %s (retried on the next relist)", meta["namespace"], meta["name"], error
            )
        except Exception:
            meta = pod.get("metadata") or {}
            log.exception("pod %s/%s: unexpected error", meta.get("namespace"), meta.get("name"))

    def _observe_unbound(self, pod: JSON) -> None:
        meta, spec, status = pod["metadata"], pod["spec"], pod.get("status") or {}
        if status.get("phase") in TERMINAL_PHASES:
            return
        if meta.get("deletionTimestamp"):
            # The apiserver deletes unscheduled pods at once unless finalizers
            # hold them; a terminal phase lets their controllers let go.
            self._patch_status(
                pod, {"phase": "Failed", "reason": "Deleted", "message": "deleted before binding"}
            )
            return
        if (spec.get("schedulerName") or DEFAULT_SCHEDULER) != DEFAULT_SCHEDULER:
            return
        if spec.get("schedulingGates"):
            self._mark_gated(pod)
            return
        self._bind(pod)

    def _observe_bound(self, pod: JSON) -> None:
        meta = pod["metadata"]
        uid = meta["uid"]
        self.uids[(meta["namespace"], meta["name"])] = uid
        runtime = self.runtimes.get(uid)
        if runtime is not None:
            runtime.update(pod)
            return
        if (pod.get("status") or {}).get("phase") in TERMINAL_PHASES:
            if meta.get("deletionTimestamp"):
                delete_pod_now(self.ctx.api, pod)
            return
        if _looks_started(pod):
            self._adopt(pod)
            return
        runtime = PodRuntime(self.ctx, pod)
        self.runtimes[uid] = runtime
        log.info("pod %s/%s: starting", meta["namespace"], meta["name"])
        runtime.start()

    def forget(self, uid: str) -> None:
        """The pod object is gone."""
        for key in [key for key, value in self.uids.items() if value == uid]:
            del self.uids[key]
        runtime = self.runtimes.pop(uid, None)
        if runtime is not None:
            runtime.remove()
        else:
            shutil.rmtree(self.ctx.pod_dir(uid), ignore_errors=True)

    def _patch_status(self, pod: JSON, status: JSON) -> None:
        meta = pod["metadata"]
        body = {"metadata": {"uid": meta["uid"]}, "status": status}
        try:
            self.ctx.api.patch(pod_path(meta["namespace"], meta["name"], "status"), body)
        except ApiError as error:
            if error.status not in (404, 409):
                raise

    def _mark_gated(self, pod: JSON) -> None:
        """What kube-scheduler reports for a gated pod: PodScheduled=False, SchedulingGated."""
        conditions = (pod.get("status") or {}).get("conditions") or []
        if any(
            c.get("type") == "PodScheduled" and c.get("reason") == "SchedulingGated"
            for c in conditions
        ):
            return
        condition = {
            "type": "PodScheduled",
            "status": "False",
            "reason": "SchedulingGated",
            "message": "Scheduling is blocked due to non-empty scheduling gates",
            "lastTransitionTime": now_rfc3339(),
        }
        self._patch_status(pod, {"conditions": [condition]})

    def _bind(self, pod: JSON) -> None:
        meta = pod["metadata"]
        body = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"]},
            "target": {"apiVersion": "v1", "kind": "Node", "name": self.ctx.node_name},
        }
        try:
            self.ctx.api.post(pod_path(meta["namespace"], meta["name"], "binding"), body)
        except ApiError as error:
            if error.status in (404, 409):
                return
            raise
        log.info("pod %s/%s: bound to %s", meta["namespace"], meta["name"], self.ctx.node_name)

    def _adopt(self, pod: JSON) -> None:
        meta = pod["metadata"]
        log.warning(
            "pod %s/%s was started by an earlier agent run: marking it Failed",
            meta["namespace"],
            meta["name"],
        )
        kill_leftovers(self.ctx.pod_dir(meta["uid"]))
        self._patch_status(pod, adopted_status(pod))
        if meta.get("deletionTimestamp"):
            delete_pod_now(self.ctx.api, pod)

    # ---------------------------------------------------------------- logs and shutdown

    def log_source(self, namespace: str, name: str, container: str) -> LogSource | None:
        uid = self.uids.get((namespace, name))
        if uid is None:
            return None
        runtime = self.runtimes.get(uid)
        if runtime is not None:
            return runtime.log_source(container)
        path = self.ctx.pod_dir(uid) / "logs" / f"{container}.log"
        return LogSource(path, lambda: False) if path.exists() else None

    def shutdown(self, timeout: float = 10.0) -> None:
        self.stop.set()
        runtimes = list(self.runtimes.values())
        for runtime in runtimes:
            runtime.shutdown()
        deadline = time.monotonic() + timeout
        for runtime in runtimes:
            runtime.done.wait(max(0.0, deadline - time.monotonic()))


# ---------------------------------------------------------------- main


@contextlib.contextmanager
def state_lock(state_dir: Path, owner: int = 0) -> Iterator[None]:
    """One agent per state directory; ``agent.pid`` names it (and its owner) while it runs."""
    state_dir.mkdir(parents=True, exist_ok=True)
    with (state_dir / "agent.lock").open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SystemExit(f"another pod agent uses {state_dir}") from None
        pid_file = state_dir / "agent.pid"
        owner_start = process_start_time(owner) if owner else None
        fields = [os.getpid(), process_start_time(os.getpid()), owner, owner_start]
        pid_file.write_text(" ".join(str(f) for f in fields) + "\n")
        try:
            yield
        finally:
            pid_file.unlink(missing_ok=True)


def build_context(args: argparse.Namespace) -> NodeContext:
    api = KubeAPI(args.kubeconfig)
    state_dir = Path(args.state_dir).resolve()
    return NodeContext(
        api=api,
        node_name=args.node_name,
        host_ip=HOST_IP,
        state_dir=state_dir,
        images=ImageCatalog.load(Path(args.images)),
        addresses=AddressPool(),
        apiserver=api.endpoint,
        cpu=os.cpu_count() or 1,
        memory=_memory_bytes(),
    )


def watch_owner(owner: int, stop: threading.Event) -> None:
    """Stop the agent when the process that started it (a test session) is gone."""
    started = process_start_time(owner)
    while not stop.wait(2.0):
        if started is None or process_start_time(owner) != started:
            log.info("owner process %d is gone", owner)
            stop.set()


def register_node(node: Node, stop: threading.Event) -> None:
    backoff = 1.0
    while not stop.is_set():
        try:
            node.register()
            return
        except API_ERRORS as error:
            log.warning("node registration failed: %s; retrying in %.0f s", error, backoff)
            stop.wait(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)


def serve(args: argparse.Namespace) -> int:
    ctx = build_context(args)
    with state_lock(ctx.state_dir, args.owner_pid):
        ready_file = ctx.state_dir / "agent.ready"
        ready_file.unlink(missing_ok=True)
        agent = PodAgent(ctx)
        cert, key = ensure_certificate(ctx.state_dir / "tls", ctx.node_name)
        logs = LogServer(agent.log_source, cert, key, host=ctx.host_ip, port=args.log_port)
        logs.start()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: agent.stop.set())
        node = Node(ctx, logs.port)
        register_node(node, agent.stop)
        threading.Thread(
            target=node.run_heartbeats, args=(agent.stop,), name="heartbeat", daemon=True
        ).start()
        if args.owner_pid:
            threading.Thread(
                target=watch_owner, args=(args.owner_pid, agent.stop), name="owner", daemon=True
            ).start()
        watching = threading.Event()
        threading.Thread(target=agent.run, args=(watching,), name="pod-watch", daemon=True).start()
        while not agent.stop.is_set() and not watching.wait(0.5):
            pass
        if not agent.stop.is_set():
            ready_file.write_text(
                json.dumps({"pid": os.getpid(), "node": ctx.node_name, "logPort": logs.port})
            )
            log.info(
                "pod agent ready: node %s, log server on %s:%d",
                ctx.node_name,
                ctx.host_ip,
                logs.port,
            )
        agent.stop.wait()
        log.info("pod agent stopping")
        ready_file.unlink(missing_ok=True)
        agent.shutdown()
        logs.stop()
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m testbed.podagent", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--kubeconfig",
        default=os.environ.get("KUBECONFIG"),
        required=not os.environ.get("KUBECONFIG"),
    )
    parser.add_argument(
        "--state-dir", default=str(DEFAULT_STATE_DIR), help="logs, volumes, certificates"
    )
    parser.add_argument("--node-name", default=NODE_NAME)
    parser.add_argument("--images", default=str(DEFAULT_IMAGES_FILE), help="image mapping (YAML)")
    parser.add_argument(
        "--log-port", type=int, default=0, help="log server port (0: any free port)"
    )
    parser.add_argument(
        "--owner-pid", type=int, default=0, help="exit when this process (a test session) exits"
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(threadName)s: %(message)s",
    )
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    return serve(args)


# ---------------------------------------------------------------- for pytest fixtures


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
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


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


if __name__ == "__main__":
    sys.exit(main())
