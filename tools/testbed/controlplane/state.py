"""Where the local control plane keeps its state (`Layout`), what a running one is (`Cluster`),
and the constants its components are started with."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path

from testbed import localhost

REPO_ROOT = Path(__file__).resolve().parents[3]
BUILD_SCRIPT = REPO_ROOT / "tools" / "k8s" / "build.sh"
BUILD_MODULES = ("kubernetes", "etcd")
DEFAULT_STATE_DIR = localhost.checkout_state_dir("cluster")

SERVICE_CIDR = "10.0.0.0/24"
NODE_IP = "10.244.0.1"  # the real node's bridge address (testbed.node.host.GATEWAY)
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
ADMIN_USER = "lockstep-admin"
CONTROLLER_MANAGER_USER = "system:kube-controller-manager"

# Component names, in start order; they are stopped in reverse.
ETCD, APISERVER, CONTROLLER_MANAGER = "etcd", "kube-apiserver", "kube-controller-manager"
COMPONENTS = (ETCD, APISERVER, CONTROLLER_MANAGER)

# Names as `kube-controller-manager --help` lists them for 1.35. No
# node-lifecycle (there is no kubelet to keep nodes Ready) and no node-ipam.
CONTROLLERS = (
    "clusterrole-aggregation-controller",
    "cronjob-controller",
    "deployment-controller",
    "disruption-controller",
    "endpoints-controller",
    "endpointslice-controller",
    "endpointslice-mirroring-controller",
    "garbage-collector-controller",
    "job-controller",
    "namespace-controller",
    "pod-garbage-collector-controller",
    "replicaset-controller",
    "root-ca-certificate-publisher-controller",
    "service-cidr-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "statefulset-controller",
    "ttl-after-finished-controller",
)
# The real node mode adds what keeps a kubelet's node schedulable: the node-lifecycle
# controller lifts the not-ready taint the kubelet registers with.
KUBELET_CONTROLLERS = (*CONTROLLERS, "node-lifecycle-controller")

# Which node runs the pods: the Python pod agent (fast, host processes) or a real kubelet with
# containerd (testbed.node). LOCKSTEP_E2E_NODE picks one; the agent is the default.
AGENT, KUBELET = "agent", "kubelet"
NODE_MODES = (AGENT, KUBELET)

ADMISSION_PLUGINS = (
    "NamespaceLifecycle",
    "LimitRanger",
    "ServiceAccount",
    "PodSecurity",
    "MutatingAdmissionWebhook",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionWebhook",
    "ResourceQuota",
)

# What `up` waits for once the controller manager runs: pods can be created in
# `default` and can mount their service account token.
READY_OBJECTS = (
    ("the default ServiceAccount", "/api/v1/namespaces/default/serviceaccounts/default"),
    ("the kube-root-ca.crt ConfigMap", "/api/v1/namespaces/default/configmaps/kube-root-ca.crt"),
)

STARTUP_TIMEOUT = 120.0
STOP_TIMEOUT = 15.0


class ClusterError(RuntimeError):
    """The control plane could not be built, started or reached."""


def log(message: str) -> None:
    print(f"[cluster] {message}", file=sys.stderr, flush=True)


# --- paths -----------------------------------------------------------------


def node_mode() -> str:
    mode = os.environ.get("LOCKSTEP_E2E_NODE") or AGENT
    if mode not in NODE_MODES:
        raise ClusterError(f"LOCKSTEP_E2E_NODE={mode!r}: expected one of {', '.join(NODE_MODES)}")
    return mode


def state_dir() -> Path:
    return Path(os.environ.get("LOCKSTEP_CLUSTER_DIR") or DEFAULT_STATE_DIR)


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where everything lives inside the state directory."""

    root: Path

    @property
    def marker(self) -> Path:  # marks the directory as ours, so `down` may remove it
        return self.root / ".lockstep-testbed"

    @property
    def state_file(self) -> Path:
        return self.root / "cluster.json"

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def controller_manager_kubeconfig(self) -> Path:
        return self.root / "kube-controller-manager.kubeconfig"

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def ca_cert(self) -> Path:
        return self.pki / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.pki / "ca.key"

    @property
    def serving_cert(self) -> Path:
        return self.pki / "apiserver.crt"

    @property
    def serving_key(self) -> Path:
        return self.pki / "apiserver.key"

    @property
    def service_account_key(self) -> Path:
        return self.pki / "sa.key"

    @property
    def service_account_pub(self) -> Path:
        return self.pki / "sa.pub"

    @property
    def token_file(self) -> Path:
        return self.pki / "tokens.csv"

    @property
    def etcd_data(self) -> Path:
        return self.root / "etcd-data"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def log_file(self, component: str) -> Path:
        return self.logs / f"{component}.log"


@dataclasses.dataclass(frozen=True)
class Cluster:
    """A running control plane, as recorded in ``<state dir>/cluster.json``."""

    state_dir: Path
    bin_dir: Path
    server: str
    admin_token: str
    ports: dict[str, int]
    pids: dict[str, int]
    node: str = AGENT  # what runs the pods: AGENT (testbed.podagent) or KUBELET (testbed.node)

    @property
    def layout(self) -> Layout:
        return Layout(self.state_dir)

    @property
    def kubeconfig(self) -> Path:
        return self.layout.kubeconfig

    @property
    def ca_file(self) -> Path:
        return self.layout.ca_cert

    @property
    def kubectl(self) -> Path:
        return self.bin_dir / "kubectl"

    def to_json(self) -> str:
        data = {
            "state_dir": str(self.state_dir),
            "bin_dir": str(self.bin_dir),
            "server": self.server,
            "admin_token": self.admin_token,
            "ports": self.ports,
            "pids": self.pids,
            "node": self.node,
        }
        return json.dumps(data, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Cluster:
        data = json.loads(text)
        return cls(
            state_dir=Path(data["state_dir"]),
            bin_dir=Path(data["bin_dir"]),
            server=data["server"],
            admin_token=data["admin_token"],
            ports={k: int(v) for k, v in data["ports"].items()},
            pids={k: int(v) for k, v in data["pids"].items()},
            node=data.get("node", AGENT),
        )
