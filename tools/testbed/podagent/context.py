"""What every pod runtime shares on the testbed node: the node context, the pod IP pool, and
the kubelet's last step for a pod (delete it with gracePeriodSeconds=0)."""

from __future__ import annotations

import ipaddress
import threading
from dataclasses import dataclass
from pathlib import Path

from ..kubeapi import JSON, ApiError, Endpoint, KubeAPI, pod_path
from .images import ImageCatalog


class AddressPool:
    """Pod IPs: one loopback address per pod (127.1.0.1 - 127.1.255.254), round robin.

    The whole of 127.0.0.0/8 is local on Linux, so a process can bind its
    pod IP and two pods can both listen on, say, port 8080 -- as long as they
    bind ``$(POD_IP)`` (status.podIP) rather than 0.0.0.0.
    """

    def __init__(self, network: str = "127.1.0.0/16") -> None:
        self._hosts = list(ipaddress.ip_network(network).hosts())
        self._next = 0
        self._by_uid: dict[str, str] = {}
        self._lock = threading.Lock()

    def reserve(self, uid: str, address: str) -> None:
        with self._lock:
            self._by_uid[uid] = address

    def allocate(self, uid: str) -> str:
        with self._lock:
            if uid in self._by_uid:
                return self._by_uid[uid]
            used = set(self._by_uid.values())
            for _ in range(len(self._hosts)):
                candidate = str(self._hosts[self._next])
                self._next = (self._next + 1) % len(self._hosts)
                if candidate not in used:
                    self._by_uid[uid] = candidate
                    return candidate
        raise RuntimeError("no free pod IP")

    def release(self, uid: str) -> None:
        with self._lock:
            self._by_uid.pop(uid, None)


@dataclass(frozen=True)
class NodeContext:
    """What every pod runtime needs to know about the node and the cluster."""

    api: KubeAPI
    node_name: str
    host_ip: str
    state_dir: Path
    images: ImageCatalog
    addresses: AddressPool
    apiserver: Endpoint
    cpu: int
    memory: int

    def pod_dir(self, uid: str) -> Path:
        return self.state_dir / "pods" / uid


def delete_pod_now(api: KubeAPI, pod: JSON) -> None:
    """DELETE with gracePeriodSeconds=0 (and the uid as precondition): the kubelet's last step."""
    meta = pod["metadata"]
    body = {
        "apiVersion": "v1",
        "kind": "DeleteOptions",
        "gracePeriodSeconds": 0,
        "preconditions": {"uid": meta["uid"]},
    }
    try:
        api.delete(pod_path(meta["namespace"], meta["name"]), body)
    except ApiError as error:
        if error.status not in (404, 409):
            raise
