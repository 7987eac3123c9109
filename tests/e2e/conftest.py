"""Fixtures for the e2e tests: a Kubernetes cluster and one namespace per test.

Without ``KUBECONFIG`` the session starts (or reuses) the local control plane
of ``testbed.cluster`` and runs the pod agent (``testbed.podagent``) as its
node, or with ``LOCKSTEP_E2E_NODE=kubelet`` a real kubelet with containerd
(``testbed.node``); the control plane stays up after the session for the next run
(``PYTHONPATH=tools python -m testbed.cluster down`` stops it). With
``KUBECONFIG`` set (kind in CI, say) the tests use that cluster as it is.
"""

from __future__ import annotations

import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from e2e_databases import extra_database
from testbed import kubetest
from testbed.operatorprocess import OperatorProcess

E2E_LABEL = "lockstep.dev/e2e"
NAMESPACE_CLEANUP_SECONDS = 60.0


@pytest.fixture(scope="session")
def local_cluster() -> bool:
    """True when the tests run on the local control plane and pod agent (not kind)."""
    return not os.environ.get("KUBECONFIG")


@pytest.fixture(scope="session")
def kubeconfig(local_cluster: bool) -> Iterator[Path]:
    if not local_cluster:
        yield Path(os.environ["KUBECONFIG"])
        return
    from testbed import cluster
    from testbed.podagent import background

    running = cluster.up()
    if running.node != "agent":  # a real kubelet runs the pods (LOCKSTEP_E2E_NODE=kubelet)
        # Jobs run the Lockstep image built by `make image` (imported by `cluster up`).
        os.environ.setdefault("LOCKSTEP_RUNNER_IMAGE", "localhost/lockstep:dev")
        yield running.kubeconfig
        return
    agent = background.start_background(running.kubeconfig, running.state_dir / "podagent")
    try:
        yield running.kubeconfig
    finally:
        _wait_for_test_namespaces(running.kubeconfig)
        agent.stop()


def _wait_for_test_namespaces(path: Path) -> None:
    """Let the agent finish the pods of deleted test namespaces before it stops."""
    core = client.CoreV1Api(config.new_client_from_config(config_file=str(path)))
    deadline = time.monotonic() + NAMESPACE_CLEANUP_SECONDS
    while time.monotonic() < deadline:
        if not core.list_namespace(label_selector=E2E_LABEL).items:
            return
        time.sleep(1)


@pytest.fixture(scope="session")
def real_node(local_cluster: bool, kubeconfig: Path) -> bool:
    """True when pods run as real containers under a kubelet: the local test bed's real node
    mode (``LOCKSTEP_E2E_NODE=kubelet``) or a ``KUBECONFIG`` cluster (kind); False on the pod
    agent, whose pods are host processes."""
    if not local_cluster:
        return True
    from testbed import cluster

    running = cluster.current()
    return running is not None and running.node == "kubelet"


@pytest.fixture(scope="session")
def node_images(real_node: bool, local_cluster: bool) -> set[str] | None:
    """The images containerd holds on the local real node (it has no registry: a pod of any
    other image cannot start); None elsewhere (the pod agent maps images, kind pulls them)."""
    if not (real_node and local_cluster):
        return None
    from testbed import cluster
    from testbed.node import images, paths

    running = cluster.current()
    assert running is not None
    return images.image_names(paths.NodeLayout.of(running.state_dir).containerd_socket)


@pytest.fixture(scope="session")
def pod_db_host(real_node: bool, local_cluster: bool) -> str:
    """The host name pods use for the test databases: 127.0.0.1 for the pod agent's host
    processes, the node's bridge address for real containers on the local test bed."""
    if not (real_node and local_cluster):
        return "127.0.0.1"
    from testbed.dbservers import host

    address = host.pod_address()
    assert address is not None, "the real node runs, but LOCKSTEP_E2E_NODE is not kubelet"
    return address


@pytest.fixture(scope="session")
def k8s(kubeconfig: Path) -> client.ApiClient:
    """An official-client ApiClient for the cluster."""
    return config.new_client_from_config(config_file=str(kubeconfig))


@pytest.fixture(scope="session")
def kubectl(kubeconfig: Path, local_cluster: bool) -> Path:
    """A kubectl binary: the one built with the local control plane, else the one on PATH."""
    if local_cluster:
        from testbed import cluster

        running = cluster.current()
        if running is not None and running.kubectl.exists():
            return running.kubectl
    found = shutil.which("kubectl")
    if found is None:
        raise RuntimeError("kubectl is not on PATH: install it to run the e2e suite on $KUBECONFIG")
    return Path(found)


def _namespace_name(node_name: str) -> str:
    base = re.sub(r"[^a-z0-9-]+", "-", node_name.lower()).strip("-")[:40].strip("-")
    return f"{base}-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def namespace(k8s: client.ApiClient, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace (ready for pods: its default ServiceAccount exists), deleted afterwards."""
    core = client.CoreV1Api(k8s)
    name = _namespace_name(request.node.name)
    body = {"metadata": {"name": name, "labels": {E2E_LABEL: "true"}}}
    core.create_namespace(body)
    deadline = time.monotonic() + 30
    while True:
        try:
            core.read_namespaced_service_account("default", name)
            break
        except ApiException as error:
            if error.status != 404 or time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    yield name
    try:
        core.delete_namespace(name)
    except ApiException as error:
        if error.status != 404:
            raise


LEASE_NAMESPACE = "lockstep-system"


@pytest.fixture(scope="session")
def crds(k8s: client.ApiClient) -> None:
    """The CRD from crds/, applied and Established before any operator starts."""
    kubetest.apply_crds(k8s)


@pytest.fixture(scope="session")
def lease_namespace(k8s: client.ApiClient) -> str:
    core = client.CoreV1Api(k8s)
    try:
        core.create_namespace({"metadata": {"name": LEASE_NAMESPACE}})
    except ApiException as error:
        if error.status != 409:
            raise
    return LEASE_NAMESPACE


@pytest.fixture(scope="session")
def operator(
    kubeconfig: Path,
    local_cluster: bool,
    crds: None,
    lease_namespace: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    """One `lockstep operator` process for the session, leading through the Lease."""
    if local_cluster:
        from testbed import demo

        # A `make demo` operator would reconcile the tests' resources too: one operator only.
        demo.stop("operator")
    process = OperatorProcess(
        kubeconfig,
        tmp_path_factory.mktemp("operator"),
        lease_namespace,
        # Tests that start an operator of their own label their resources for it.
        extra_args=("--selector", f"!{kubetest.OWN_OPERATOR_LABEL}"),
    )
    process.start()
    process.wait_leader()
    yield process
    process.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """On failure, attach the operator's log so the cause is in the report."""
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        process = getattr(item, "funcargs", {}).get("operator")
        if isinstance(process, OperatorProcess):
            report.sections.append(("operator log (tail)", process.log()[-8000:]))


@pytest.fixture(scope="session")
def toolchains(local_cluster: bool, request: pytest.FixtureRequest) -> Path | None:
    """The real migration tools, installed once per session by tools/toolchains/install.sh.

    On the local pod agent the examples' images (`lockstep-examples/<folder>`)
    run these toolchains (see tools/testbed/images.yaml). The script is
    idempotent, so a warm cache costs a fraction of a second; a cold one
    downloads from Maven Central, npm and PyPI for minutes, and its progress is
    shown live (output capture is suspended meanwhile). On a `KUBECONFIG`
    cluster the example images carry their tools, so nothing is installed
    (None).
    """
    if not local_cluster:
        return None
    import contextlib

    from toolchains import install

    capture = request.config.pluginmanager.getplugin("capturemanager")
    suspended = capture.global_and_fixture_disabled() if capture else contextlib.nullcontext()
    with suspended:
        return install()


@pytest.fixture
def other_pg_url(postgres_admin_url: str) -> Iterator[str]:
    """A second fresh database: two migrations with their own files need their own history."""
    with extra_database(postgres_admin_url) as url:
        yield url


@pytest.fixture
def drift_pg_url(postgres_admin_url: str) -> Iterator[str]:
    """A fresh database for a migration that will be changed by hand."""
    with extra_database(postgres_admin_url) as url:
        yield url
