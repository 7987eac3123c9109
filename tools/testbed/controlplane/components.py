"""The component processes of the local control plane: building the binaries, their command
lines, and starting, checking and stopping them as detached processes."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

from .state import (
    ADMISSION_PLUGINS,
    AGENT,
    APISERVER,
    BUILD_MODULES,
    BUILD_SCRIPT,
    CONTROLLER_MANAGER,
    CONTROLLERS,
    ETCD,
    KUBELET,
    KUBELET_CONTROLLERS,
    NODE_IP,
    SERVICE_ACCOUNT_ISSUER,
    SERVICE_CIDR,
    STOP_TIMEOUT,
    ClusterError,
    Layout,
    log,
)

# --- binaries --------------------------------------------------------------


def ensure_built(modules: tuple[str, ...] = BUILD_MODULES) -> Path:
    """Build the control plane binaries if needed; return their directory."""
    override = os.environ.get("LOCKSTEP_K8S_BIN_DIR")
    if override:
        return Path(override)
    result = subprocess.run(
        ["bash", str(BUILD_SCRIPT), *modules],
        stdout=subprocess.PIPE,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise ClusterError(f"{BUILD_SCRIPT} failed with exit code {result.returncode}")
    return Path(result.stdout.strip().splitlines()[-1])


# --- processes -------------------------------------------------------------


def start_process(layout: Layout, name: str, argv: list[str]) -> int:
    """Start a detached process (own session, survives us); return its pid."""
    with layout.log_file(name).open("ab") as log_file:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=layout.root,
            start_new_session=True,
        )
    return process.pid


def reap(pid: int) -> None:
    """Collect an exited child of ours, so that it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def is_alive(pid: int, name: str) -> bool:
    """Whether ``pid`` is still the ``name`` process we started (not a reused pid)."""
    reap(pid)
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    state, parent = fields[0], int(fields[1])
    if state == "Z":  # exited, not yet collected by its parent
        reap(pid)
        return False
    program = cmdline.split(b"\0", 1)[0]
    if Path(os.fsdecode(program)).name == name:
        return True
    # Between fork and exec a child still shows its parent's command line (or none): our own
    # child that has not exec'd yet is alive, not a stranger that reused the pid.
    return parent == os.getpid()


def stop_process(pid: int, name: str) -> None:
    if not is_alive(pid, name):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while time.monotonic() < deadline:
        if not is_alive(pid, name):
            return
        time.sleep(0.1)
    log(f"{name} (pid {pid}) ignored SIGTERM; killing it")
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    reap(pid)


def log_tail(layout: Layout, name: str, lines: int = 20) -> str:
    try:
        text = layout.log_file(name).read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


# --- component command lines -----------------------------------------------


def etcd_argv(bin_dir: Path, layout: Layout, ports: dict[str, int]) -> list[str]:
    client = f"http://127.0.0.1:{ports['etcd']}"
    peer = f"http://127.0.0.1:{ports['etcd-peer']}"
    return [
        str(bin_dir / ETCD),
        "--name=testbed",
        f"--data-dir={layout.etcd_data}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=testbed={peer}",
        "--unsafe-no-fsync",
        "--log-level=warn",
    ]


def apiserver_argv(
    bin_dir: Path, layout: Layout, ports: dict[str, int], node: str = AGENT
) -> list[str]:
    """The API server on loopback; with a real node (``node == KUBELET``) it must also be
    reachable from pods, so it listens on every address (the node's iptables fence drops all
    but loopback and the pod bridge), advertises the bridge address as the endpoint of the
    `kubernetes` Service, and authorizes the kubelet as a node."""
    if node == KUBELET:
        return [*_apiserver_common(bin_dir, layout, ports), *_apiserver_real_node()]
    return [
        *_apiserver_common(bin_dir, layout, ports),
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        "--authorization-mode=RBAC",
        f"--enable-admission-plugins={','.join(ADMISSION_PLUGINS)}",
        # No kube-proxy here: reach webhooks (and aggregated APIs) behind a
        # Service through its endpoints instead of its cluster IP.
        "--enable-aggregator-routing=true",
        # The `kubernetes` Service cannot point at a loopback address; do not
        # try (and log an error every 10 s).
        "--endpoint-reconciler-type=none",
    ]


def _apiserver_real_node() -> list[str]:
    return [
        "--bind-address=0.0.0.0",
        f"--advertise-address={NODE_IP}",
        "--authorization-mode=Node,RBAC",
        f"--enable-admission-plugins={','.join((*ADMISSION_PLUGINS, 'NodeRestriction'))}",
        # The node's Hostname address does not resolve; its InternalIP is the bridge.
        "--kubelet-preferred-address-types=InternalIP",
    ]


def _apiserver_common(bin_dir: Path, layout: Layout, ports: dict[str, int]) -> list[str]:
    return [
        str(bin_dir / APISERVER),
        f"--etcd-servers=http://127.0.0.1:{ports['etcd']}",
        f"--secure-port={ports['apiserver']}",
        f"--cert-dir={layout.pki}",
        f"--tls-cert-file={layout.serving_cert}",
        f"--tls-private-key-file={layout.serving_key}",
        f"--client-ca-file={layout.ca_cert}",
        f"--token-auth-file={layout.token_file}",
        f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
        f"--service-account-key-file={layout.service_account_pub}",
        f"--service-account-signing-key-file={layout.service_account_key}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--allow-privileged=true",
        "--profiling=false",
    ]


def controller_manager_argv(bin_dir: Path, layout: Layout, node: str = AGENT) -> list[str]:
    controllers = KUBELET_CONTROLLERS if node == KUBELET else CONTROLLERS
    return [
        str(bin_dir / CONTROLLER_MANAGER),
        f"--kubeconfig={layout.controller_manager_kubeconfig}",
        "--leader-elect=false",
        "--secure-port=0",
        f"--controllers={','.join(controllers)}",
        "--use-service-account-credentials=true",
        f"--service-account-private-key-file={layout.service_account_key}",
        f"--root-ca-file={layout.ca_cert}",
        # Terminated pods stay until their Job goes, as the tests and benches expect: the
        # default (12,500) made the fleet bench's seeded history vanish under it at 10,000
        # migrations with 5 releases each. Orphaned pods are still collected.
        "--terminated-pod-gc-threshold=0",
        # Each controller's client at 100 requests/s instead of 20: the garbage collector
        # deleting the pods of the Jobs retention deletes (40,000 at 10,000 migrations with 5
        # releases) ran at about 13 pods/s, so the fleet bench timed the test bed's collector,
        # not Lockstep.
        "--kube-api-qps=100",
        "--kube-api-burst=200",
        "--profiling=false",
    ]
