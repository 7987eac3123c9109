"""Bringing the real node up beside the control plane and taking it down without a trace.

``prepare`` runs before etcd (host packages, the sysctl snapshot, the bridge that carries the
node IP the API server advertises); ``start`` runs after the controller manager (containerd,
images, the kubelet until the node is Ready and schedulable, kube-proxy, kube-scheduler);
``stop`` removes the containers, stops the processes and undoes every host change.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from testbed.controlplane import components, credentials, health
from testbed.controlplane.state import Cluster, ClusterError, log

from . import config, derived, host, images
from .paths import NodeLayout

Launch = Callable[[Cluster, str, list[str]], Cluster]
NODE_PORTS = ("kubelet", "kubelet-healthz", "kube-proxy-healthz", "kube-proxy-metrics")
NODE_PROCESSES = (config.CONTAINERD, config.KUBELET, config.KUBE_PROXY, config.SCHEDULER)


def prepare(cluster: Cluster) -> None:
    """Host side before the control plane starts: packages, sysctl snapshot, the bridge."""
    host.install_missing()
    layout = NodeLayout.of(cluster.state_dir)
    for directory in layout.directories():
        directory.mkdir(parents=True, exist_ok=True)
    host.save_sysctls(layout.sysctls)
    host.create_bridge()


def write_files(cluster: Cluster, tokens: dict[str, str]) -> None:
    layout = NodeLayout.of(cluster.state_dir)
    layout.containerd_config.write_text(config.containerd_toml(layout))
    (layout.cni_conf_dir / "10-lockstep.conflist").write_text(config.cni_conflist(layout))
    layout.kubelet_config.write_text(
        config.kubelet_config(layout, cluster.ports["kubelet"], cluster.ports["kubelet-healthz"])
    )
    for component, (user, _groups) in config.IDENTITIES.items():
        credentials.write_kubeconfig(
            layout.kubeconfig(component), cluster.server, cluster.ca_file, user, tokens[user]
        )


def containerd_ready(socket: Path) -> bool:
    return socket.exists() and images.ctr(socket, "version").returncode == 0


def node_schedulable(cluster: Cluster) -> bool:
    """The node is Ready and the node-lifecycle controller has lifted the not-ready taint."""
    status, body = health.api_get(cluster, f"/api/v1/nodes/{config.NODE_NAME}")
    if status != 200:
        return False
    node = json.loads(body)
    ready = any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in node.get("status", {}).get("conditions", [])
    )
    taints = [t["key"] for t in node.get("spec", {}).get("taints", []) or []]
    return ready and "node.kubernetes.io/not-ready" not in taints


def proxy_synced(port: int) -> bool:
    """kube-proxy's /healthz answers 200 once its first iptables sync is done."""
    result = subprocess.run(
        ["curl", "-sf", "-o", "/dev/null", f"http://127.0.0.1:{port}/healthz"],
        capture_output=True,
        check=False,
    )
    return result.returncode == 0


def start(cluster: Cluster, tokens: dict[str, str], launch: Launch) -> Cluster:
    layout = NodeLayout.of(cluster.state_dir)
    bin_dir, ports = cluster.bin_dir, cluster.ports
    write_files(cluster, tokens)
    host.install_fence(ports["apiserver"], ports["kubelet"])
    started = time.monotonic()
    cluster = launch(cluster, config.CONTAINERD, config.containerd_argv(layout))
    socket = layout.containerd_socket
    health.wait_until(cluster, "containerd", functools.partial(containerd_ready, socket))
    imported = images.import_all(socket)
    lockstep = images.lockstep_archive()
    if lockstep is not None:
        try:
            imported += derived.import_examples(socket, lockstep)
        except (OSError, KeyError, ValueError, ClusterError) as error:
            log(f"warning: example app images not imported: {error}")
    log(f"images: {', '.join(imported) or 'all already in containerd'}")
    kubelet_started = time.monotonic()
    cluster = launch(cluster, config.KUBELET, config.kubelet_argv(bin_dir, layout))
    health.wait_until(
        cluster, "the node Ready and untainted", functools.partial(node_schedulable, cluster)
    )
    log(f"node {config.NODE_NAME} Ready {time.monotonic() - kubelet_started:.1f} s after kubelet")
    cluster = launch(cluster, config.KUBE_PROXY, config.kube_proxy_argv(bin_dir, layout, ports))
    cluster = launch(cluster, config.SCHEDULER, config.scheduler_argv(bin_dir, layout))
    health.wait_until(
        cluster,
        "kube-proxy's first sync",
        functools.partial(proxy_synced, ports["kube-proxy-healthz"]),
    )
    # kube-proxy prepends its own jumps on its first sync: put the fence back in front.
    host.install_fence(ports["apiserver"], ports["kubelet"])
    log(f"real node up in {time.monotonic() - started:.1f} s")
    return cluster


def remove_containers(socket: Path) -> int:
    """Kill and delete every container of the k8s.io namespace (pods and their sandboxes)."""
    if not containerd_ready(socket):
        return 0
    tasks = images.ctr(socket, "tasks", "ls", "-q").stdout.split()
    if tasks:  # --force: SIGKILL, wait for the exit, delete (and unmount the rootfs)
        images.ctr(socket, "tasks", "delete", "--force", *tasks)
    containers = images.ctr(socket, "containers", "ls", "-q").stdout.split()
    if containers:
        images.ctr(socket, "containers", "rm", *containers)
    return len(containers)


def stop(cluster: Cluster) -> None:
    """Stop the node's processes, remove its containers, undo its host changes."""
    layout = NodeLayout.of(cluster.state_dir)
    started = time.monotonic()
    for name in (config.SCHEDULER, config.KUBE_PROXY, config.KUBELET):
        pid = cluster.pids.get(name)
        if pid is not None:
            components.stop_process(pid, name)
    stopped = time.monotonic()
    removed = remove_containers(layout.containerd_socket)
    cleared = time.monotonic()
    pid = cluster.pids.get(config.CONTAINERD)
    if pid is not None:
        components.stop_process(pid, config.CONTAINERD)
    shims = host.kill_shims(layout.containerd_socket)
    mounts = host.unmount_all((layout.root, Path("/run/containerd")))
    netns = host.remove_network_namespaces()
    host.remove_log_links(layout.pod_logs)
    subprocess.run(
        config.kube_proxy_cleanup_argv(cluster.bin_dir), capture_output=True, check=False
    )
    chains = sum(
        host.remove_chains(binary, (*host.FOREIGN_CHAIN_PREFIXES, host.OWN_CHAIN_PREFIX))
        for binary in ("iptables", "ip6tables")
    )
    host.delete_bridge()
    host.remove_fixed_path_leftovers(config.CNI_NETWORK)
    restored = host.restore_sysctls(layout.sysctls)
    log(
        f"node down in {time.monotonic() - started:.1f} s (processes {stopped - started:.1f} s, "
        f"containers {cleared - stopped:.1f} s): "
        f"{removed} containers, {shims} shims killed, {mounts} mounts, "
        f"{netns} netns, {chains} iptables chains removed; sysctls restored: "
        f"{', '.join(restored) or 'none changed'}"
    )


def check_mode_supported() -> None:
    """The real node needs root (iptables, mounts, cgroups)."""
    if os.geteuid() != 0:
        raise ClusterError("LOCKSTEP_E2E_NODE=kubelet needs root (containerd, iptables, mounts)")
