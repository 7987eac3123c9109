"""The bench's private test bed (the e2e control plane of `testbed.cluster`, the pod agent, the
private PostgreSQL of `testbed.databases`) and its helper processes (floor client, stand-in
kubelet)."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client

from benchlib.apimeter import ApiMeter
from benchlib.common import DRIVER_LABEL, REPO, SYSTEM_NAMESPACE, log
from benchlib.kube import Identity, api_client, ensure_namespace, make_identity
from testbed import cluster, databases, kubetest, localhost
from testbed.controlplane import health
from testbed.kubeapi import KubeAPI
from testbed.podagent import background


@dataclass
class Bed:
    """The private control plane, PostgreSQL, identities and meters of one bench run."""

    state_dir: Path
    cluster: Any  # testbed.controlplane.state.Cluster
    api: client.ApiClient  # the official client, for typed requests
    kube: KubeAPI  # raw JSON requests and watch streams, as the admin
    pg_admin_url: str
    meter: ApiMeter
    operator: Identity
    floor: Identity
    agent: Any = None  # testbed.podagent.background.AgentProcess while the pod agent runs

    @property
    def kubeconfig(self) -> Path:
        return Path(self.cluster.kubeconfig)

    @property
    def work(self) -> Path:
        path = self.state_dir / "work"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def kube_version(self) -> str:
        return str(client.VersionApi(self.api).get_code().git_version)

    def start_agent(self) -> None:
        if self.agent is None:
            self.agent = background.start_background(self.kubeconfig, self.state_dir / "podagent")

    def stop_agent(self) -> None:
        if self.agent is not None:
            self.agent.stop()
            self.agent = None


def private_state(state_dir: Path) -> None:
    """Point the test bed at a state directory of this run's own (as .ci/run does)."""
    os.environ["LOCKSTEP_CLUSTER_DIR"] = str(state_dir / "cluster")
    os.environ["LOCKSTEP_DB_DIR"] = str(state_dir / "db")


@contextlib.contextmanager
def test_bed(state_dir: Path, keep: bool = False) -> Iterator[Bed]:
    """Start (or reuse, with `keep`) the bench's own control plane and PostgreSQL."""
    state_dir.mkdir(parents=True, exist_ok=True)
    state_dir.chmod(0o755)  # the `postgres` user must reach the database directory
    private_state(state_dir)
    running = cluster.up()
    admin_url = databases.ensure_postgres()
    api = api_client(Path(running.kubeconfig))
    bed: Bed | None = None
    try:
        kubetest.apply_crds(api)
        ensure_namespace(api, SYSTEM_NAMESPACE)
        identities = state_dir / "identities"
        identities.mkdir(exist_ok=True)
        operator = make_identity(
            api, running.kubeconfig, "lockstep-bench-operator", identities / "operator"
        )
        floor = make_identity(api, running.kubeconfig, "lockstep-bench-floor", identities / "floor")

        def scrape() -> str:
            status, text = health.api_get(running, "/metrics", timeout=30)
            if status != 200:
                raise RuntimeError(f"GET /metrics: HTTP {status}")
            return text

        meter = ApiMeter(api, scrape)
        meter.install("operator", operator)
        meter.install("floor", floor)
        kube = KubeAPI(running.kubeconfig, pool=16)
        bed = Bed(state_dir, running, api, kube, admin_url, meter, operator, floor)
        yield bed
    finally:
        if bed is not None:
            bed.stop_agent()
        if not keep:
            log(f"stopping the bench's control plane and PostgreSQL ({state_dir})")
            cluster.down()
            databases.down()


# --------------------------------------------------------------------------- helper processes


class Helper:
    """A bench helper (floor client, stand-in kubelet) run as a process of its own."""

    def __init__(self, script: str, args: Sequence[str], log_dir: Path, name: str) -> None:
        self.argv = [sys.executable, str(REPO / "bench" / script), *args]
        self.log_file = log_dir / f"{name}.log"
        self.ready_file = log_dir / f"{name}.ready"
        self.process: Any = None
        log_dir.mkdir(parents=True, exist_ok=True)

    @property
    def pid(self) -> int:
        return int(self.process.pid)

    def start(self, timeout: float = 60.0) -> None:
        import subprocess

        self.ready_file.unlink(missing_ok=True)
        with self.log_file.open("ab") as output:
            self.process = subprocess.Popen(
                [*self.argv, "--ready-file", str(self.ready_file)],
                stdout=output,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        deadline = time.monotonic() + timeout
        while not self.ready_file.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.argv[1]} did not start:\n{self.log()}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None:
            localhost.terminate(self.process, 15)
        self.process = None

    def log(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-4000:]
        except OSError:
            return ""


def floor_job_template(engine: str) -> str:
    """The Job Lockstep would build for a migration, as a template for the floor client.

    Built once by Lockstep's own builder with placeholders the floor client fills in by plain
    string replacement (name, namespace, uid, Secret, key, ConfigMap, generation).
    """
    from lockstep.constants import DEFAULT_RUNNER_IMAGE
    from lockstep.jobs import job_spec, naming
    from lockstep.model import parse_spec

    spec = parse_spec(
        {
            "tool": "sql",
            "source": {"configMapRef": {"name": "__CONFIGMAP__"}},
            "target": "head",
            "database": {
                "engine": engine,
                "urlSecretRef": {"name": "__SECRET__", "key": "__KEY__"},
            },
        }
    )
    owner = naming.Owner("__NAME__", "__NAMESPACE__", "__UID__")
    request = naming.JobRequest(attempt=0, target="head")
    job = job_spec.build_job(owner, spec, "floor000", request, "floor", DEFAULT_RUNNER_IMAGE)
    job["metadata"]["labels"][DRIVER_LABEL] = "floor"
    job["metadata"]["annotations"]["bench.lockstep.dev/generation"] = "__GENERATION__"
    return json.dumps(job)
