"""The Node object of the testbed pod agent: its registration, status heartbeat and Lease."""

from __future__ import annotations

import contextlib
import logging
import platform
import shutil
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path

from ..kubeapi import API_ERRORS, JSON, ApiError, now_rfc3339
from .context import NodeContext

log = logging.getLogger("testbed.podagent")

NODE_NAME = "lockstep-node"
HOST_IP = "127.0.0.1"
HEARTBEAT_SECONDS = 10
LEASE_SECONDS = 40


def memory_bytes() -> int:
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
