"""`lockstep operator` from the image against the test bed's control plane, under the same
restrictions as the other smoke tests: it logs in, takes the Lease, reports ready, reconciles
the quickstart into a migration Job that runs this image, and stops cleanly on SIGTERM.

The API server listens on 127.0.0.1 only, so the container reaches it as a pod reaches the
`kubernetes` Service: through a forwarder on the network's host address, by the name
`kubernetes` (which the server's certificate covers), and that port is the only other one open.
"""

from __future__ import annotations

import base64
import contextlib
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

import imagetest
from tcpforward import TcpForwarder
from testbed import cluster, isolated_net, kubetest

pytestmark = pytest.mark.image

OPERATOR_PORT = 8080
KUBECONFIG_IN_CONTAINER = "/etc/lockstep/kubeconfig"
READY_DEADLINE_SECONDS = 90.0


@pytest.fixture(scope="module")
def control_plane(
    image_postgres: tuple[str, isolated_net.IsolatedNet],
) -> Iterator[tuple[client.ApiClient, str]]:
    """(an API client, the server's URL as the container reaches it), CRDs Established."""
    running = cluster.up()
    api = config.new_client_from_config(config_file=str(running.kubeconfig))
    kubetest.apply_crds(api)
    net = image_postgres[1]
    forwarder = TcpForwarder(
        lambda: ["127.0.0.1"], running.ports["apiserver"], host=net.host_ip
    ).start()
    isolated_net.allow(net, forwarder.port)
    try:
        yield api, f"https://kubernetes:{forwarder.port}"
    finally:
        forwarder.stop()


def kubeconfig_for(running: cluster.state.Cluster, server: str) -> dict[str, Any]:
    ca = base64.b64encode(running.ca_file.read_bytes()).decode()
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "c", "cluster": {"server": server, "certificate-authority-data": ca}}
        ],
        "users": [{"name": "u", "user": {"token": running.admin_token}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "c",
    }


def test_operator_leads_and_reconciles_into_a_job_of_this_image(
    pod: imagetest.Pod, control_plane: tuple[client.ApiClient, str], tmp_path: Path
) -> None:
    api, server = control_plane
    running = cluster.current()
    assert running is not None
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(kubeconfig_for(running, server)))
    kubeconfig.chmod(0o644)
    namespace = f"image-{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": namespace}})
    name = imagetest.unique_name("operator")
    argv = [
        "lockstep", "operator",
        "--kubeconfig", KUBECONFIG_IN_CONTAINER,
        "--namespace", namespace,
        "--lease-namespace", namespace,
        "--http-port", str(OPERATOR_PORT),
        "--runner-image", pod.podman.image,
        # The gate webhook serves TLS from files under /tmp: the read-only root must allow it.
        # Its configuration is the operator's own (URL mode), one per test, removed after.
        "--webhook-configuration", f"lockstep-gate-{namespace}",
        "--webhook-url", "https://127.0.0.1:9443",
    ]  # fmt: skip
    pod.started.append(name)
    pod.podman(
        "run", "--detach", *pod.args(name=name), "--add-host", f"kubernetes:{pod.net.host_ip}",
        "--volume", f"{kubeconfig}:{KUBECONFIG_IN_CONTAINER}:ro",
        "--entrypoint", argv[0], pod.podman.image, *argv[1:],
        check=True,
    )  # fmt: skip
    try:
        wait_until_leader(pod, name)
        documents = kubetest.quickstart_documents(pod.database_url)
        for document in documents:  # this operator's, not the e2e session operator's
            if document["kind"] == "DatabaseMigration":
                labels = document["metadata"].setdefault("labels", {})
                labels[kubetest.OWN_OPERATOR_LABEL] = "true"
        kubetest.create_objects(api, namespace, documents)
        job = wait_for_job(api, namespace, "shop")
        images = {c.image for c in job.spec.template.spec.containers}
        images |= {c.image for c in job.spec.template.spec.init_containers or []}
        assert images == {pod.podman.image}

        started = time.monotonic()
        pod.podman("stop", "--time", "30", name, check=True)
        assert time.monotonic() - started < 20, "the operator ignored SIGTERM"
        code = pod.podman("inspect", "--format", "{{.State.ExitCode}}", name, check=True)
        logs = pod.podman("logs", name)
        assert int(code.stdout) == 0, logs.stdout + logs.stderr
        assert "Traceback" not in logs.stdout + logs.stderr
    finally:
        with contextlib.suppress(ApiException):  # absent when the test failed before it
            kubetest.delete_migration(api, namespace, "shop")
        with contextlib.suppress(ApiException):
            client.AdmissionregistrationV1Api(api).delete_mutating_webhook_configuration(
                f"lockstep-gate-{namespace}"
            )
        core.delete_namespace(namespace)


def operator_says(pod: imagetest.Pod, container: str, path: str) -> str | None:
    """GET http://127.0.0.1:8080<path> inside the container (its network is private)."""
    script = (
        "import sys, urllib.request\n"
        f"print(urllib.request.urlopen('http://127.0.0.1:{OPERATOR_PORT}{path}', timeout=2)"
        ".read().decode())"
    )
    result = pod.podman("exec", container, "python3", "-c", script)
    return result.stdout if result.returncode == 0 else None


def wait_until_leader(pod: imagetest.Pod, container: str) -> None:
    deadline = time.monotonic() + READY_DEADLINE_SECONDS
    while time.monotonic() < deadline:
        metrics = operator_says(pod, container, "/metrics")
        leads = metrics is not None and "\nlockstep_leader 1.0" in "\n" + metrics
        if leads and operator_says(pod, container, "/readyz") is not None:
            return
        state = pod.podman("inspect", "--format", "{{.State.Status}}", container).stdout.strip()
        if state != "running":
            logs = pod.podman("logs", container)
            raise AssertionError(f"the operator is {state}:\n{logs.stdout}{logs.stderr}")
        time.sleep(1)
    logs = pod.podman("logs", container)
    raise AssertionError(f"the operator did not lead:\n{logs.stdout}{logs.stderr}")


def wait_for_job(api: client.ApiClient, namespace: str, migration: str) -> client.V1Job:
    deadline = time.monotonic() + READY_DEADLINE_SECONDS
    while time.monotonic() < deadline:
        jobs = kubetest.jobs_of(api, namespace, migration)
        if jobs:
            return jobs[0]
        time.sleep(1)
    body = kubetest.get_migration(api, namespace, migration)
    raise AssertionError(f"no Job for {migration}: {json.dumps(body.get('status'))}")
