"""Configuration and command lines of the real node's processes: containerd, the kubelet,
kube-proxy and kube-scheduler (the settings that worked here: ../shared/TESTBED-NOTES.md,
"Real containers on these machines")."""

from __future__ import annotations

import json
from pathlib import Path

from . import host, images, paths
from .paths import NodeLayout

NODE_NAME = "lockstep-node"
CNI_NETWORK = "lockstep-node"

CONTAINERD, KUBELET, KUBE_PROXY, SCHEDULER = (
    "containerd",
    "kubelet",
    "kube-proxy",
    "kube-scheduler",
)
# Who each component is to the API server (static tokens). The kubelet is a real node
# identity for the Node authorizer; kube-proxy and the scheduler have default RBAC bindings.
IDENTITIES = {
    KUBELET: (f"system:node:{NODE_NAME}", "system:nodes"),
    KUBE_PROXY: ("system:kube-proxy", ""),
    SCHEDULER: ("system:kube-scheduler", ""),
}


def containerd_toml(layout: NodeLayout) -> str:
    """containerd 1.6 (config version 2): private root, state and socket; runc with cgroupfs
    (cgroup v1 hybrid host, no systemd); the CNI bridge from Debian's plugins."""
    cri = '[plugins."io.containerd.grpc.v1.cri"]'
    runc = '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]'
    disabled = [
        "io.containerd.internal.v1.opt",
        "io.containerd.snapshotter.v1.aufs",
        "io.containerd.snapshotter.v1.btrfs",
        "io.containerd.snapshotter.v1.devmapper",
        "io.containerd.snapshotter.v1.zfs",
        "io.containerd.tracing.processor.v1.otlp",
    ]
    return "\n".join(
        [
            "version = 2",
            f'root = "{paths.containerd_root()}"',
            f'state = "{layout.containerd_state}"',
            f"disabled_plugins = {json.dumps(disabled)}",
            "[grpc]",
            f'  address = "{layout.containerd_socket}"',
            "[ttrpc]",
            f'  address = "{layout.containerd_socket}.ttrpc"',
            "[metrics]",
            '  address = ""',
            cri,
            f'  sandbox_image = "{images.PAUSE_IMAGE}"',
            "  disable_apparmor = true",
            # No CAP_SYS_RESOURCE here: the kubelet's -998 for sandboxes would make runc fail
            # ("can't get final child's PID from pipe"); clamp to containerd's own score.
            "  restrict_oom_score_adj = true",
            "  enable_selinux = false",
            "  max_container_log_line_size = 16384",
            '[plugins."io.containerd.grpc.v1.cri".containerd]',
            '  snapshotter = "overlayfs"',
            '  default_runtime_name = "runc"',
            runc,
            '  runtime_type = "io.containerd.runc.v2"',
            f"{runc[:-1]}.options]",
            "  SystemdCgroup = false",
            '  BinaryName = "runc"',
            '[plugins."io.containerd.grpc.v1.cri".cni]',
            '  bin_dir = "/usr/lib/cni"',
            f'  conf_dir = "{layout.cni_conf_dir}"',
            "  max_conf_num = 1",
            "",
        ]
    )


def cni_conflist(layout: NodeLayout) -> str:
    """The pod network: the node's bridge as gateway, no masquerade (pod traffic stays on this
    machine), hairpin so that a pod reaches itself through its Service."""
    bridge = {
        "type": "bridge",
        "bridge": host.BRIDGE,
        "isGateway": True,
        "ipMasq": False,
        "hairpinMode": True,
        "ipam": {
            "type": "host-local",
            "ranges": [[{"subnet": host.POD_CIDR, "gateway": host.GATEWAY}]],
            "routes": [{"dst": "0.0.0.0/0"}],
            "dataDir": str(layout.cni_ipam_dir),
        },
    }
    document = {"cniVersion": "1.0.0", "name": CNI_NETWORK, "plugins": [bridge]}
    return json.dumps(document, indent=2) + "\n"


def kubelet_config(layout: NodeLayout, port: int, healthz_port: int) -> str:
    """KubeletConfiguration (JSON is YAML). The API server has no kubelet client certificate,
    so the kubelet accepts anonymous requests (logs, exec) but listens only on the bridge."""
    document = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": host.GATEWAY,
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "cgroupsPerQOS": False,
        "enforceNodeAllocatable": [],
        "failSwapOn": False,
        "containerRuntimeEndpoint": f"unix://{layout.containerd_socket}",
        "podLogsDir": str(layout.pod_logs),
        "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False}},
        "authorization": {"mode": "AlwaysAllow"},
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
        "protectKernelDefaults": False,
        "evictionHard": {
            "memory.available": "50Mi",
            "nodefs.available": "1%",
            "nodefs.inodesFree": "1%",
            "imagefs.available": "1%",
        },
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "imageMinimumGCAge": "24h",
        "crashLoopBackOff": {"maxContainerRestartPeriod": "2s"},
        "syncFrequency": "10s",
        "fileCheckFrequency": "20s",
        "nodeStatusReportFrequency": "10s",
        "serializeImagePulls": False,
        "resolvConf": "/etc/resolv.conf",
    }
    return json.dumps(document, indent=2) + "\n"


def containerd_argv(layout: NodeLayout) -> list[str]:
    return ["containerd", "--config", str(layout.containerd_config)]


def kubelet_argv(bin_dir: Path, layout: NodeLayout) -> list[str]:
    return [
        str(bin_dir / KUBELET),
        f"--config={layout.kubelet_config}",
        f"--kubeconfig={layout.kubeconfig(KUBELET)}",
        f"--hostname-override={NODE_NAME}",
        f"--node-ip={host.GATEWAY}",
        f"--root-dir={layout.kubelet_root}",
        f"--cert-dir={layout.kubelet_root / 'pki'}",
    ]


def kube_proxy_argv(bin_dir: Path, layout: NodeLayout, ports: dict[str, int]) -> list[str]:
    """iptables mode; conntrack sysctls and route_localnet left alone (0 = do not set)."""
    return [
        str(bin_dir / KUBE_PROXY),
        f"--kubeconfig={layout.kubeconfig(KUBE_PROXY)}",
        f"--hostname-override={NODE_NAME}",
        "--proxy-mode=iptables",
        f"--cluster-cidr={host.POD_CIDR}",
        f"--healthz-bind-address=127.0.0.1:{ports['kube-proxy-healthz']}",
        f"--metrics-bind-address=127.0.0.1:{ports['kube-proxy-metrics']}",
        "--conntrack-max-per-core=0",
        "--conntrack-tcp-timeout-established=0s",
        "--conntrack-tcp-timeout-close-wait=0s",
        "--iptables-localhost-nodeports=false",
        f"--nodeport-addresses={host.POD_CIDR}",
    ]


def kube_proxy_cleanup_argv(bin_dir: Path) -> list[str]:
    return [str(bin_dir / KUBE_PROXY), "--cleanup", "--proxy-mode=iptables"]


def scheduler_argv(bin_dir: Path, layout: NodeLayout) -> list[str]:
    return [
        str(bin_dir / SCHEDULER),
        f"--kubeconfig={layout.kubeconfig(SCHEDULER)}",
        "--leader-elect=false",
        "--secure-port=0",
    ]
