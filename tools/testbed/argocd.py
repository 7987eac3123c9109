"""Argo CD's application controller and repo-server as host processes on the test cluster.

The `argocd` multi-call binary is built from an Argo CD source tree by tools/argocd/build.sh
(the module proxy cannot serve Argo CD here: docs/adr/0013-argocd-is-not-built-here.md), which
also copies the tree's CRDs and the two workloads' install manifests beside it. The test bed then
does what `kubectl apply -n argocd -f install.yaml` and the kubelet would do for these two:

- a Redis from Debian (`redis-server`) on a free loopback port, no persistence, stopped with them;
- Argo CD's CRDs, namespace `argocd`, `argocd-cm` (Lockstep's health check under
  `resource.customizations.health.lockstep.dev_DatabaseMigration`, read from
  deploy/argocd-health/health.lua as users load it), `argocd-secret`, `argocd-cmd-params-cm`, and
  the `default` AppProject (which argocd-server would create; it does not run here);
- each process's environment is built from its install manifest's `env`: every `configMapKeyRef`
  is resolved against the ConfigMaps above, as the kubelet does for the pod, so a setting is made
  the way a user makes it (a key in argocd-cm or argocd-cmd-params-cm), not by a flag of ours.
  Only what a pod gets from its Service and container image differs: ports (flags), and
  `ARGOCD_FAKE_IN_CLUSTER` + `KUBECONFIG` (Argo CD's own local-development mode, its Procfile),
  which make `https://kubernetes.default.svc` mean the kubeconfig's cluster.

The repo-server runs `git` and `kustomize` from PATH, as in Argo CD's image: git from the
machine, kustomize v5.8.1 (the version Argo CD pins) built by tools/k8s/build.sh.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from testbed import hostprocess, localhost

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "tools" / "argocd" / "build.sh"
K8S_BUILD_SCRIPT = REPO / "tools" / "k8s" / "build.sh"
HEALTH_LUA = REPO / "deploy" / "argocd-health" / "health.lua"
HEALTH_KEY = "resource.customizations.health.lockstep.dev_DatabaseMigration"
NAMESPACE = "argocd"
CACHE = Path(os.environ.get("LOCKSTEP_CACHE") or Path.home() / ".cache" / "lockstep")
BIN_DIR = CACHE / "argocd" / "bin"
MANIFESTS = {
    "argocd-application-controller": "argocd-application-controller-statefulset.yaml",
    "argocd-repo-server": "argocd-repo-server-deployment.yaml",
}
# argocd-cm: reconcile (and re-resolve `main`) every 5 s instead of every 3 min with up to 1 min
# jitter, so a push is seen as fast as Flux's 5 s poll in tests/e2e/test_flux.py.
RECONCILIATION = {"timeout.reconciliation": "5s", "timeout.reconciliation.jitter": "0s"}


def built_binary() -> Path | None:
    """The cached `argocd` binary, if tools/argocd/build.sh made one."""
    binary = BIN_DIR / "argocd"
    return binary if binary.is_file() and (BIN_DIR / "manifests").is_dir() else None


def build(source_tree: Path) -> Path:
    """Build (or find current) `argocd` from `source_tree`; the binary directory."""
    return _run_build([str(BUILD_SCRIPT), str(source_tree)])


def build_kustomize() -> Path:
    """The directory holding the `kustomize` CLI the repo-server runs."""
    return _run_build([str(K8S_BUILD_SCRIPT), "kustomize"])


def _run_build(argv: list[str]) -> Path:
    result = subprocess.run(["bash", *argv], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{result.stderr[-4000:]}")
    return Path(result.stdout.strip().splitlines()[-1])


def kubectl_apply(kubectl: Path, kubeconfig: Path, documents: list[dict[str, Any]]) -> None:
    subprocess.run(
        [
            str(kubectl),
            "--kubeconfig",
            str(kubeconfig),
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            "-",
        ],
        input=yaml.safe_dump_all(documents),
        capture_output=True,
        text=True,
        check=True,
    )


def install_crds(kubectl: Path, kubeconfig: Path, bin_dir: Path) -> None:
    """Application, ApplicationSet and AppProject CRDs from the built tree, then wait."""
    files = sorted((bin_dir / "manifests").glob("*-crd.yaml"))
    args = [str(kubectl), "--kubeconfig", str(kubeconfig)]
    names = []
    for path in files:
        subprocess.run(
            [*args, "apply", "--server-side", "--force-conflicts", "-f", str(path)],
            capture_output=True,
            text=True,
            check=True,
        )
        names.append(f"crd/{yaml.safe_load(path.read_text())['metadata']['name']}")
    subprocess.run(
        [*args, "wait", "--for=condition=Established", "--timeout=60s", *names],
        capture_output=True,
        text=True,
        check=True,
    )


def config_maps(redis: str, repo_server: str) -> dict[str, dict[str, str]]:
    """argocd-cm and argocd-cmd-params-cm as a user of this test bed would write them."""
    return {
        "argocd-cm": {HEALTH_KEY: HEALTH_LUA.read_text(), **RECONCILIATION},
        "argocd-cmd-params-cm": {
            "redis.server": redis,
            "repo.server": repo_server,
            "reposerver.listen.address": "127.0.0.1",
            "controller.log.level": "debug",
            "reposerver.log.level": "debug",
        },
    }


def settings_documents(maps: dict[str, dict[str, str]]) -> list[dict[str, Any]]:
    """The namespace, both ConfigMaps, argocd-secret and the `default` AppProject."""
    meta = {"namespace": NAMESPACE, "labels": {"app.kubernetes.io/part-of": "argocd"}}
    docs: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
    ]
    for name, data in maps.items():
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": name, **meta},
                "data": data,
            }
        )
    docs.append(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "argocd-secret", **meta},
            "stringData": {"server.secretkey": os.urandom(16).hex()},
        }
    )
    docs.append(
        {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "AppProject",
            "metadata": {"name": "default", "namespace": NAMESPACE},
            "spec": {  # what argocd-server creates at its first start
                "sourceRepos": ["*"],
                "destinations": [{"server": "*", "namespace": "*"}],
                "clusterResourceWhitelist": [{"group": "*", "kind": "*"}],
            },
        }
    )
    return docs


def manifest_env(
    manifest: Path, maps: dict[str, dict[str, str]], state_dir: Path
) -> dict[str, str]:
    """The container's env as the kubelet would set it: configMapKeyRef resolved against `maps`
    (absent keys are optional in Argo CD's manifests and stay unset), plain values kept, except
    absolute paths, which move under `state_dir` (no /tmp/kubecache, /helm-working-dir of ours)."""
    body = yaml.safe_load(manifest.read_text())
    (container,) = body["spec"]["template"]["spec"]["containers"]
    env: dict[str, str] = {}
    for item in container.get("env") or []:
        source = (item.get("valueFrom") or {}).get("configMapKeyRef")
        if source is not None:
            value = maps.get(source["name"], {}).get(source["key"])
            if value is not None:
                env[item["name"]] = value
        elif "value" in item:
            value = str(item["value"])
            env[item["name"]] = (
                str(state_dir / value.lstrip("/")) if value.startswith("/") else value
            )
    return env


class Process(hostprocess.HostProcess):
    """One Argo CD component: the multi-call binary under its name, a log, a /healthz port."""

    def __init__(
        self, name: str, argv: list[str], env: dict[str, str], health: int, log_file: Path
    ) -> None:
        super().__init__(name, log_file)
        self.argv, self.env, self.health = argv, env, health

    def start(self) -> None:
        self.spawn(self.argv, self.env)

    def wait_ready(self, timeout: float = 60.0) -> None:
        self.wait_http_ok(self.health, "/healthz", timeout)


class ArgoCD:
    """Redis, the repo-server and the application controller, started and stopped together."""

    def __init__(
        self, bin_dir: Path, kustomize_dir: Path, kubeconfig: Path, kubectl: Path, state_dir: Path
    ) -> None:
        self.bin_dir, self.kubeconfig, self.kubectl = bin_dir, kubeconfig, kubectl
        self.state_dir = state_dir
        redis_bin = shutil.which("redis-server")
        if redis_bin is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.redis_port, self.repo_port = localhost.free_port(), localhost.free_port()
        self.maps = config_maps(f"127.0.0.1:{self.redis_port}", f"127.0.0.1:{self.repo_port}")
        tmp = state_dir / "tmp"  # the repo-server's clones (/tmp/_argocd-repo in a pod)
        for sub in (
            "tmp",
            "redis",
            "app/config/tls",
            "app/config/ssh",
            "app/config/gpg/source",
            "app/config/gpg/keys",
        ):
            (state_dir / sub).mkdir(parents=True, exist_ok=True)
        self.redis = Process(
            "redis",
            [
                redis_bin,
                "--port",
                str(self.redis_port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(state_dir / "redis"),
                "--daemonize",
                "no",
            ],
            {"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
            0,
            state_dir / "redis.log",
        )
        base = {
            "PATH": f"{bin_dir}:{kustomize_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": str(state_dir),
            "TMPDIR": str(tmp),
            "KUBECONFIG": str(kubeconfig),
            "ARGOCD_FAKE_IN_CLUSTER": "true",
            "ARGOCD_TLS_DATA_PATH": str(state_dir / "app/config/tls"),
            "ARGOCD_SSH_DATA_PATH": str(state_dir / "app/config/ssh"),
            "ARGOCD_GPG_DATA_PATH": str(state_dir / "app/config/gpg/source"),
            "ARGOCD_GNUPGHOME": str(state_dir / "app/config/gpg/keys"),
            "ARGOCD_GPG_ENABLED": "false",
            "ARGOCD_ASK_PASS_SOCK": str(state_dir / "reposerver-ask-pass.sock"),
        }
        repo_metrics, controller_metrics = localhost.free_port(), localhost.free_port()
        self.repo_server = self._component(
            "argocd-repo-server",
            base,
            repo_metrics,
            # --metrics-address: the install manifest maps reposerver.metrics.listen.address to
            # ARGOCD_REPO_SERVER_LISTEN_METRICS_ADDRESS, the code reads
            # ARGOCD_REPO_SERVER_METRICS_LISTEN_ADDRESS, so the key never arrives (0.0.0.0).
            [
                "--port",
                str(self.repo_port),
                "--metrics-port",
                str(repo_metrics),
                "--metrics-address",
                "127.0.0.1",
            ],
        )
        self.controller = self._component(
            "argocd-application-controller",
            base,
            controller_metrics,
            ["--namespace", NAMESPACE, "--metrics-port", str(controller_metrics)],
        )

    def _component(self, name: str, base: dict[str, str], health: int, args: list[str]) -> Process:
        manifest = self.bin_dir / "manifests" / MANIFESTS[name]
        env = {
            **manifest_env(manifest, self.maps, self.state_dir),
            **base,
            "ARGOCD_BINARY_NAME": name,
        }
        return Process(
            name, [str(self.bin_dir / name), *args], env, health, self.state_dir / f"{name}.log"
        )

    def __enter__(self) -> ArgoCD:
        try:
            self.redis.start()
            _wait_for_port(self.redis_port, self.redis)
            install_crds(self.kubectl, self.kubeconfig, self.bin_dir)
            kubectl_apply(self.kubectl, self.kubeconfig, settings_documents(self.maps))
            for component in (self.repo_server, self.controller):
                component.start()
                component.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        for component in (self.controller, self.repo_server, self.redis):
            component.stop()

    def logs(self) -> str:
        parts = (self.repo_server, self.controller)
        return "\n".join(f"--- {c.name}\n{c.log()[-6000:]}" for c in parts)


def _wait_for_port(port: int, process: Process, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.process is not None and process.process.poll() is not None:
            raise RuntimeError(f"{process.name} exited:\n{process.log()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{process.name} did not answer PING on {port}:\n{process.log()}")
