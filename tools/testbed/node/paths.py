"""Where the real node keeps things: caches that outlive a cluster (images, containerd's
content store) under ``${LOCKSTEP_CACHE:-~/.cache/lockstep}/node``, and a cluster's own state
(sockets, configs, the kubelet's root, pod logs) under ``<cluster state dir>/node``."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path


def cache() -> Path:
    base = os.environ.get("LOCKSTEP_CACHE") or str(Path.home() / ".cache" / "lockstep")
    path = Path(base) / "node"
    path.mkdir(parents=True, exist_ok=True)
    return path


def image_cache() -> Path:
    path = cache() / "images"
    path.mkdir(parents=True, exist_ok=True)
    return path


def containerd_root() -> Path:
    """containerd's root (content store, snapshots, metadata): cached, so a warm ``up``
    finds its images unpacked. Only one containerd uses it at a time (one node per machine)."""
    path = cache() / "containerd"
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclasses.dataclass(frozen=True)
class NodeLayout:
    """The node's files inside a cluster's state directory."""

    root: Path

    @classmethod
    def of(cls, cluster_state_dir: Path) -> NodeLayout:
        return cls(cluster_state_dir / "node")

    @property
    def containerd_config(self) -> Path:
        return self.root / "containerd.toml"

    @property
    def containerd_state(self) -> Path:
        return self.root / "containerd-state"

    @property
    def containerd_socket(self) -> Path:
        return self.root / "containerd.sock"

    @property
    def cni_conf_dir(self) -> Path:
        return self.root / "cni"

    @property
    def cni_ipam_dir(self) -> Path:
        return self.root / "cni-ipam"

    @property
    def kubelet_root(self) -> Path:
        return self.root / "kubelet"

    @property
    def kubelet_config(self) -> Path:
        return self.root / "kubelet.yaml"

    @property
    def pod_logs(self) -> Path:
        return self.root / "pod-logs"

    @property
    def sysctls(self) -> Path:
        return self.root / "sysctls.json"

    def kubeconfig(self, component: str) -> Path:
        return self.root / f"{component}.kubeconfig"

    def directories(self) -> tuple[Path, ...]:
        return (
            self.root,
            self.containerd_state,
            self.cni_conf_dir,
            self.cni_ipam_dir,
            self.kubelet_root,
            self.pod_logs,
        )
