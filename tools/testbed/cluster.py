"""A local Kubernetes control plane for Lockstep's e2e tests.

etcd, kube-apiserver and kube-controller-manager, built from the Go modules in
tools/k8s/ (see tools/k8s/build.sh), run as detached local processes. There is
no node, kubelet, scheduler or kube-proxy: the pod agent (testbed.podagent)
plays the node.

    PYTHONPATH=tools python -m testbed.cluster up|down|kubeconfig|env|status

State (certificates, tokens, etcd data, logs, pids, kubeconfig) lives in
``$LOCKSTEP_CLUSTER_DIR`` (default /tmp/lockstep-cluster); ``down`` removes it.
Set ``LOCKSTEP_K8S_BIN_DIR`` to use already built binaries instead of building.

Pytest fixtures import :func:`up`, :func:`down`, :func:`current` and
:func:`ensure_built`.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import fcntl
import functools
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "tools" / "k8s" / "build.sh"
BUILD_MODULES = ("kubernetes", "etcd")
DEFAULT_STATE_DIR = Path("/tmp/lockstep-cluster")  # noqa: S108 - a documented default

SERVICE_CIDR = "10.0.0.0/24"
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


# --- certificates and credentials ------------------------------------------


def openssl(*args: str) -> None:
    result = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ClusterError(f"openssl {args[0]} failed: {result.stderr.strip()}")


def serving_cert_extensions() -> str:
    names = [
        "IP:127.0.0.1",
        "IP:10.0.0.1",  # the first service IP: the `kubernetes` Service
        "DNS:localhost",
        "DNS:kubernetes",
        "DNS:kubernetes.default",
        "DNS:kubernetes.default.svc",
        "DNS:kubernetes.default.svc.cluster.local",
    ]
    return "\n".join(
        [
            "[serving]",
            "basicConstraints = critical, CA:FALSE",
            "keyUsage = critical, digitalSignature, keyEncipherment",
            "extendedKeyUsage = serverAuth",
            "subjectKeyIdentifier = hash",
            "authorityKeyIdentifier = keyid, issuer",
            f"subjectAltName = {', '.join(names)}",
            "",
        ]
    )


def generate_ca(layout: Layout) -> None:
    openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "3650",
        "-subj", "/CN=lockstep-testbed-ca",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
        "-keyout", str(layout.ca_key), "-out", str(layout.ca_cert),
    )  # fmt: skip


def generate_serving_cert(layout: Layout) -> None:
    csr = layout.pki / "apiserver.csr"
    extensions = layout.pki / "apiserver.ext"
    extensions.write_text(serving_cert_extensions())
    openssl(
        "req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=kube-apiserver",
        "-keyout", str(layout.serving_key), "-out", str(csr),
    )  # fmt: skip
    openssl(
        "x509", "-req", "-sha256", "-days", "3650", "-in", str(csr),
        "-CA", str(layout.ca_cert), "-CAkey", str(layout.ca_key), "-set_serial",
        str(secrets.randbits(63)), "-extfile", str(extensions), "-extensions", "serving",
        "-out", str(layout.serving_cert),
    )  # fmt: skip


def generate_service_account_key(layout: Layout) -> None:
    key, pub = layout.service_account_key, layout.service_account_pub
    openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(key))
    openssl("pkey", "-in", str(key), "-pubout", "-out", str(pub))


def write_token_file(layout: Layout) -> dict[str, str]:
    """Write the static token file; return user -> token."""
    users = {ADMIN_USER: "system:masters", CONTROLLER_MANAGER_USER: ""}
    tokens = {user: secrets.token_hex(24) for user in users}
    lines = [f'{tokens[user]},{user},{user},"{groups}"' for user, groups in users.items()]
    layout.token_file.write_text("\n".join(lines) + "\n")
    layout.token_file.chmod(0o600)
    return tokens


def kubeconfig_document(server: str, ca_cert: Path, user: str, token: str) -> str:
    ca_data = base64.b64encode(ca_cert.read_bytes()).decode()
    name = "lockstep-testbed"
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": name, "cluster": {"server": server, "certificate-authority-data": ca_data}}
        ],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": user}}],
        "current-context": name,
        "preferences": {},
    }
    return json.dumps(document, indent=2) + "\n"  # JSON is YAML


def write_kubeconfig(path: Path, server: str, ca_cert: Path, user: str, token: str) -> None:
    path.write_text(kubeconfig_document(server, ca_cert, user, token))
    path.chmod(0o600)


# --- processes -------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


def apiserver_argv(bin_dir: Path, layout: Layout, ports: dict[str, int]) -> list[str]:
    return [
        str(bin_dir / APISERVER),
        f"--etcd-servers=http://127.0.0.1:{ports['etcd']}",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        f"--secure-port={ports['apiserver']}",
        f"--cert-dir={layout.pki}",
        f"--tls-cert-file={layout.serving_cert}",
        f"--tls-private-key-file={layout.serving_key}",
        f"--client-ca-file={layout.ca_cert}",
        f"--token-auth-file={layout.token_file}",
        "--authorization-mode=RBAC",
        f"--enable-admission-plugins={','.join(ADMISSION_PLUGINS)}",
        f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
        f"--service-account-key-file={layout.service_account_pub}",
        f"--service-account-signing-key-file={layout.service_account_key}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--allow-privileged=true",
        # No kube-proxy here: reach webhooks (and aggregated APIs) behind a
        # Service through its endpoints instead of its cluster IP.
        "--enable-aggregator-routing=true",
        # The `kubernetes` Service cannot point at a loopback address; do not
        # try (and log an error every 10 s).
        "--endpoint-reconciler-type=none",
        "--profiling=false",
    ]


def controller_manager_argv(bin_dir: Path, layout: Layout) -> list[str]:
    return [
        str(bin_dir / CONTROLLER_MANAGER),
        f"--kubeconfig={layout.controller_manager_kubeconfig}",
        "--leader-elect=false",
        "--secure-port=0",
        f"--controllers={','.join(CONTROLLERS)}",
        "--use-service-account-credentials=true",
        f"--service-account-private-key-file={layout.service_account_key}",
        f"--root-ca-file={layout.ca_cert}",
        "--profiling=false",
    ]


# --- talking to the API server ---------------------------------------------


def api_get(cluster: Cluster, path: str, timeout: float = 5.0) -> tuple[int, str]:
    """GET ``path`` as the admin; return (HTTP status, body); status 0 if unreachable."""
    context = ssl.create_default_context(cafile=str(cluster.ca_file))
    request = urllib.request.Request(  # noqa: S310 - https to our own server
        cluster.server + path, headers={"Authorization": f"Bearer {cluster.admin_token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:  # noqa: S310
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")
    except (urllib.error.URLError, OSError):
        return 0, ""


def dead_components(cluster: Cluster) -> list[str]:
    return [name for name, pid in cluster.pids.items() if not is_alive(pid, name)]


def wait_until(cluster: Cluster, what: str, check: Callable[[], bool]) -> None:
    """Poll ``check`` until true; fail early if a component exits."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while not check():
        dead = dead_components(cluster)
        if dead:
            tails = "\n".join(f"--- {n} ---\n{log_tail(cluster.layout, n)}" for n in dead)
            raise ClusterError(f"{', '.join(dead)} exited while waiting for {what}:\n{tails}")
        if time.monotonic() > deadline:
            raise ClusterError(f"timed out after {STARTUP_TIMEOUT:.0f} s waiting for {what}")
        time.sleep(0.2)


def etcd_healthy(port: int) -> bool:
    url = f"http://127.0.0.1:{port}/health"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(json.load(response).get("health") == "true")
    except (urllib.error.URLError, OSError, ValueError):
        return False


def is_ready(cluster: Cluster) -> bool:
    return not dead_components(cluster) and api_get(cluster, "/readyz")[0] == 200


def api_object_exists(cluster: Cluster, path: str) -> bool:
    return api_get(cluster, path)[0] == 200


# --- lifecycle -------------------------------------------------------------


@contextlib.contextmanager
def locked(root: Path) -> Iterator[None]:
    """Serialize up/down across processes (e.g. parallel pytest workers)."""
    root.parent.mkdir(parents=True, exist_ok=True)
    with Path(f"{root}.lock").open("w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def current(root: Path | None = None) -> Cluster | None:
    """The cluster recorded in the state directory, if any (running or not)."""
    layout = Layout(root or state_dir())
    try:
        return Cluster.from_json(layout.state_file.read_text())
    except (OSError, ValueError, KeyError):
        return None


def is_running(root: Path | None = None) -> bool:
    cluster = current(root)
    return cluster is not None and is_ready(cluster)


def prepare_state_dir(layout: Layout) -> None:
    for directory in (layout.root, layout.pki, layout.logs, layout.etcd_data):
        directory.mkdir(parents=True, exist_ok=True)
    for private in (layout.root, layout.pki, layout.etcd_data):
        private.chmod(0o700)
    layout.marker.touch()


def generate_credentials(layout: Layout, server: str) -> str:
    """Write certificates, keys, tokens and kubeconfigs; return the admin token."""
    generate_ca(layout)
    generate_serving_cert(layout)
    generate_service_account_key(layout)
    tokens = write_token_file(layout)
    write_kubeconfig(layout.kubeconfig, server, layout.ca_cert, ADMIN_USER, tokens[ADMIN_USER])
    write_kubeconfig(
        layout.controller_manager_kubeconfig,
        server,
        layout.ca_cert,
        CONTROLLER_MANAGER_USER,
        tokens[CONTROLLER_MANAGER_USER],
    )
    return tokens[ADMIN_USER]


def save(cluster: Cluster) -> None:
    state_file = cluster.layout.state_file
    state_file.write_text(cluster.to_json())
    state_file.chmod(0o600)  # it holds the admin token


def launch(cluster: Cluster, name: str, argv: list[str]) -> Cluster:
    """Start one component; return the cluster with its pid recorded (and saved)."""
    pid = start_process(cluster.layout, name, argv)
    started = dataclasses.replace(cluster, pids={**cluster.pids, name: pid})
    save(started)
    return started


def start_components(cluster: Cluster) -> Cluster:
    """Start etcd, the API server and the controller manager, waiting for each."""
    layout, bin_dir, ports = cluster.layout, cluster.bin_dir, cluster.ports
    cluster = launch(cluster, ETCD, etcd_argv(bin_dir, layout, ports))
    wait_until(cluster, "etcd", functools.partial(etcd_healthy, ports["etcd"]))
    cluster = launch(cluster, APISERVER, apiserver_argv(bin_dir, layout, ports))
    wait_until(cluster, "the API server /readyz", functools.partial(is_ready, cluster))
    cluster = launch(cluster, CONTROLLER_MANAGER, controller_manager_argv(bin_dir, layout))
    for what, path in READY_OBJECTS:
        wait_until(cluster, what, functools.partial(api_object_exists, cluster, path))
    return cluster


def stop_components(cluster: Cluster) -> None:
    for name in reversed(COMPONENTS):
        pid = cluster.pids.get(name)
        if pid is not None:
            stop_process(pid, name)


def is_ours(root: Path) -> bool:
    """Whether ``root`` is absent, empty or a test bed state directory (safe to remove)."""
    layout = Layout(root)
    if not root.exists() or layout.marker.exists() or layout.state_file.exists():
        return True
    return not any(root.iterdir())


def _down(root: Path) -> None:
    if not is_ours(root):
        raise ClusterError(f"{root} is not a test bed state directory; not touching it")
    cluster = current(root)
    if cluster is not None:
        stop_components(cluster)
    if root.exists():
        shutil.rmtree(root)


def _up(root: Path) -> Cluster:
    existing = current(root)
    if existing is not None and is_ready(existing):
        log(f"already running at {existing.server}")
        return existing
    if existing is not None or root.exists():
        log(f"cleaning up a stale cluster in {root}")
        _down(root)
    bin_dir = ensure_built()
    layout = Layout(root)
    prepare_state_dir(layout)
    ports = {"etcd": free_port(), "etcd-peer": free_port(), "apiserver": free_port()}
    server = f"https://127.0.0.1:{ports['apiserver']}"
    token = generate_credentials(layout, server)
    cluster = Cluster(root, bin_dir, server, token, ports, {})
    save(cluster)
    try:
        return start_components(cluster)
    except BaseException:
        started = current(root) or cluster
        stop_components(started)
        log(f"start failed; logs kept in {layout.logs}")
        raise


UP_ATTEMPTS = 3


def up(root: Path | None = None) -> Cluster:
    """Start the control plane (a no-op if it is already up); return it.

    A fresh start is retried: on this test bed etcd has been seen to die right after launch,
    with an empty log, about once in a few cold starts under heavy parallel load (cause not
    found; see docs/status.md). Each attempt starts from a clean state directory.
    """
    root = root or state_dir()
    start = time.monotonic()
    with locked(root):
        for attempt in range(1, UP_ATTEMPTS + 1):
            try:
                cluster = _up(root)
                break
            except ClusterError as error:
                if attempt == UP_ATTEMPTS:
                    raise
                log(f"start attempt {attempt} failed ({str(error).splitlines()[0]}); retrying")
                _down(root)
    elapsed = time.monotonic() - start
    log(f"up in {elapsed:.1f} s: {cluster.server}, kubeconfig {cluster.kubeconfig}")
    return cluster


def down(root: Path | None = None) -> None:
    """Stop every component and remove the state directory."""
    root = root or state_dir()
    with locked(root):
        _down(root)


def restart_apiserver(
    root: Path | None = None, *, downtime: float = 0.0, hard: bool = False
) -> tuple[Cluster, float]:
    """Stop the kube-apiserver and start it again: same port, flags, certificates and etcd.

    For chaos tests: clients see the API go away and come back at the same address. The API
    stays down ``downtime`` seconds more after the old process has exited; ``hard`` kills it
    (SIGKILL) instead of a graceful SIGTERM. Returns the cluster with the new pid recorded and
    the seconds the API was unreachable (stop to /readyz).
    """
    root = root or state_dir()
    with locked(root):
        cluster = current(root)
        if cluster is None or not is_ready(cluster):
            raise ClusterError(f"no running control plane in {root} to restart the API server of")
        pid = cluster.pids[APISERVER]
        stopped = time.monotonic()
        if hard:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + STOP_TIMEOUT
            while is_alive(pid, APISERVER) and time.monotonic() < deadline:
                time.sleep(0.05)
        else:
            stop_process(pid, APISERVER)
        if downtime > 0:
            time.sleep(downtime)
        argv = apiserver_argv(cluster.bin_dir, cluster.layout, cluster.ports)
        cluster = launch(cluster, APISERVER, argv)
        wait_until(
            cluster, "the restarted API server /readyz", functools.partial(is_ready, cluster)
        )
        unreachable = time.monotonic() - stopped
    log(f"kube-apiserver restarted (pid {cluster.pids[APISERVER]}), down {unreachable:.1f} s")
    return cluster, unreachable


def kubeconfig_path(root: Path | None = None) -> Path:
    return Layout(root or state_dir()).kubeconfig


# --- command line ----------------------------------------------------------


def cmd_up() -> int:
    cluster = up()
    print(cluster.kubeconfig)
    return 0


def cmd_down() -> int:
    down()
    log("down")
    return 0


def cmd_kubeconfig() -> int:
    print(kubeconfig_path())
    return 0


def cmd_env() -> int:
    """Print shell exports for the running cluster: eval "$(... env)"."""
    cluster = current()
    if cluster is None:
        log("not running")
        return 1
    print(f"export KUBECONFIG={cluster.kubeconfig}")
    print(f'export PATH="{cluster.bin_dir}:$PATH"')
    return 0


def cmd_status() -> int:
    cluster = current()
    if cluster is None:
        print("stopped")
        return 1
    dead = dead_components(cluster)
    if dead:
        print(f"broken: {', '.join(dead)} not running (state in {cluster.state_dir})")
        return 1
    if not is_ready(cluster):
        print(f"starting or unhealthy: {cluster.server} is not ready")
        return 1
    pids = ", ".join(f"{name} {pid}" for name, pid in cluster.pids.items())
    print(f"running: {cluster.server} ({pids}); kubeconfig {cluster.kubeconfig}")
    return 0


COMMANDS: dict[str, Callable[[], int]] = {
    "up": cmd_up,
    "down": cmd_down,
    "kubeconfig": cmd_kubeconfig,
    "env": cmd_env,
    "status": cmd_status,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m testbed.cluster", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("command", choices=sorted(COMMANDS))
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command]()
    except ClusterError as error:
        log(f"error: {error}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
