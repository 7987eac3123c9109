"""Flux's source-controller and kustomize-controller as host processes on the test cluster.

The binaries come from tools/k8s/build.sh (modules `source-controller`, `kustomize-controller`:
Go wrapper modules, cached outside the repository), the CRDs from the same module versions in
Go's module cache (`config/crd/bases`), so binaries and CRDs always match. The controllers run
with the admin kubeconfig (no RBAC: this is a test bed), without leader election, watching all
namespaces, on free loopback ports: source-controller serves its artifacts (tarballs of the
fetched commits) at http://127.0.0.1:<port>, which is what it advertises to kustomize-controller.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from types import TracebackType

from testbed import hostprocess, localhost

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "tools" / "k8s" / "build.sh"
CONTROLLERS = ("source-controller", "kustomize-controller")
NAMESPACE = "flux-system"
APPLY_FIRST = "lockstep.dev/DatabaseMigration"


def build() -> Path:
    """Build (or find cached) both controllers; the binary directory."""
    result = subprocess.run(
        ["bash", str(BUILD_SCRIPT), *CONTROLLERS], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"{BUILD_SCRIPT} {' '.join(CONTROLLERS)} failed:\n{result.stderr}")
    return Path(result.stdout.strip().splitlines()[-1])


def module_dir(controller: str) -> Path:
    """Where Go's module cache holds the controller's module at the version the wrapper pins."""
    result = subprocess.run(
        ["go", "list", "-m", "-f", "{{.Dir}}", f"github.com/fluxcd/{controller}"],
        cwd=REPO / "tools" / "k8s" / controller,
        env={**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=readonly"},
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0 or not result.stdout.strip():
        raise RuntimeError(f"go list -m github.com/fluxcd/{controller} failed: {result.stderr}")
    return Path(result.stdout.strip())


def crd_files() -> list[Path]:
    """Every CRD both controllers watch (source-controller also watches Helm, OCI and Buckets)."""
    files: list[Path] = []
    for controller in CONTROLLERS:
        files += sorted((module_dir(controller) / "config" / "crd" / "bases").glob("*.yaml"))
    return files


def install_crds(kubectl: Path, kubeconfig: Path) -> None:
    """Server-side apply (the CRDs are too big for the last-applied annotation), then wait."""
    files = crd_files()
    args = [str(kubectl), "--kubeconfig", str(kubeconfig)]
    for path in files:
        subprocess.run(
            [*args, "apply", "--server-side", "--force-conflicts", "-f", str(path)],
            capture_output=True,
            text=True,
            check=True,
        )
    subprocess.run(
        [*args, "wait", "--for=condition=Established", "--timeout=60s"]
        + [f"crd/{_crd_name(path)}" for path in files],
        capture_output=True,
        text=True,
        check=True,
    )
    subprocess.run(
        [*args, "create", "namespace", NAMESPACE], capture_output=True, text=True, check=False
    )


def _crd_name(path: Path) -> str:
    group, _, plural = path.stem.partition("_")
    return f"{plural}.{group}"


class PortTakenError(RuntimeError):
    """Another process bound a port between `free_port()` and the controller's own bind."""


class Controller(hostprocess.HostProcess):
    """One controller process: its flags, log file and health endpoint.

    Ports are chosen at each start; `extra_args` may use {storage_port} for a third one."""

    def __init__(self, binary: Path, log_dir: Path, extra_args: list[str]) -> None:
        super().__init__(binary.name, log_dir / f"{binary.name}.log")
        self.binary = binary
        self.health_port = 0
        self.extra_args = extra_args

    def start(self, kubeconfig: Path) -> None:
        self.health_port = localhost.free_port()
        storage_port = localhost.free_port()
        argv = [
            str(self.binary),
            f"--health-addr=127.0.0.1:{self.health_port}",
            f"--metrics-addr=127.0.0.1:{localhost.free_port()}",
            "--enable-leader-election=false",
            "--watch-all-namespaces=true",
            "--log-level=debug",
            "--log-encoding=json",
            *(arg.format(storage_port=storage_port) for arg in self.extra_args),
        ]
        self.spawn(
            argv, {**os.environ, "KUBECONFIG": str(kubeconfig), "RUNTIME_NAMESPACE": NAMESPACE}
        )

    def start_ready(self, kubeconfig: Path, attempts: int = 3) -> None:
        """Start and wait until ready; new ports when one was taken meanwhile (other test
        sessions on this machine pick free ports too)."""
        for attempt in range(1, attempts + 1):
            self.start(kubeconfig)
            try:
                self.wait_ready()
                return
            except PortTakenError:
                self.stop()
                if attempt == attempts:
                    raise

    def wait_ready(self, timeout: float = 60.0) -> None:
        def port_taken(log: str) -> None:
            if "address already in use" in log[-2000:]:
                raise PortTakenError(f"{self.name}: {log[-600:]}")

        self.wait_http_ok(self.health_port, "/readyz", timeout, on_exit=port_taken)


class Flux:
    """Both controllers, started together against one cluster and stopped together."""

    def __init__(self, bin_dir: Path, kubeconfig: Path, state_dir: Path) -> None:
        self.kubeconfig = kubeconfig
        storage = state_dir / "artifacts"
        storage.mkdir(parents=True, exist_ok=True)
        self.source = Controller(
            bin_dir / "source-controller",
            state_dir,
            [
                f"--storage-path={storage}",
                "--storage-addr=127.0.0.1:{storage_port}",
                "--storage-adv-addr=127.0.0.1:{storage_port}",
            ],
        )
        # --requeue-dependency: how often a Kustomization re-checks a dependency that is not
        # Ready yet (default 30 s); shorter keeps the tests' waits short, the behaviour the same.
        # --custom-apply-stage-kinds: apply DatabaseMigrations before Deployments (Flux applies
        # built-in kinds first), so a Kustomization holding both never lets a new pod reach the
        # rollout gate while the migration still looks done (docs/gitops.md).
        self.kustomize = Controller(
            bin_dir / "kustomize-controller",
            state_dir,
            ["--requeue-dependency=2s", f"--custom-apply-stage-kinds={APPLY_FIRST}"],
        )

    def __enter__(self) -> Flux:
        try:
            for controller in (self.source, self.kustomize):
                controller.start_ready(self.kubeconfig)
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
        for controller in (self.kustomize, self.source):
            controller.stop()

    def logs(self) -> str:
        return "\n".join(f"--- {c.name}\n{c.log()[-6000:]}" for c in (self.source, self.kustomize))
