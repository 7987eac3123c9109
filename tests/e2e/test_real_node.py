"""The real node does what a cluster's kubelet does, and the pod agent does not.

These run only where pods are real containers (``LOCKSTEP_E2E_NODE=kubelet`` on the local test
bed, or a ``KUBECONFIG`` cluster): the restricted security context enforced (non-root user,
read-only root, admission at the ``restricted`` Pod Security level), termination messages,
native sidecar ordering, ClusterIP Services through kube-proxy, the API server reached from a
pod the way in-cluster clients reach it, and the test database reached from the pod network.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from sqlalchemy.engine import make_url

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
SMOKE_IMAGE = "localhost/lockstep-smoke:bookworm"  # Debian minbase + busybox (testbed.node)
LOCKSTEP_IMAGE = "localhost/lockstep:dev"
POD_TIMEOUT = 90.0


@pytest.fixture(autouse=True)
def _needs_real_node(real_node: bool, local_cluster: bool) -> None:
    if not real_node:
        pytest.skip("pods are host processes on the pod agent: run with LOCKSTEP_E2E_NODE=kubelet")
    if not local_cluster:
        pytest.skip("the smoke image exists only on the local test bed's real node")


@pytest.fixture
def core(k8s: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(k8s)


@pytest.fixture
def restricted(core: client.CoreV1Api, namespace: str) -> str:
    """The test namespace, enforcing the `restricted` Pod Security level like a hardened cluster."""
    labels = {"pod-security.kubernetes.io/enforce": "restricted"}
    core.patch_namespace(namespace, {"metadata": {"labels": labels}})
    return namespace


def chart_security() -> tuple[dict[str, Any], dict[str, Any]]:
    """The pod and container security contexts the Helm chart gives the operator."""
    values = yaml.safe_load((REPO / "charts" / "lockstep" / "values.yaml").read_text())
    return values["podSecurityContext"], values["securityContext"]


def container(name: str, script: str, image: str = SMOKE_IMAGE, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "image": image,
        "imagePullPolicy": "Never",
        "command": ["/bin/bash", "-c", script],
        "securityContext": chart_security()[1],
        **extra,
    }


def pod(name: str, containers: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "restartPolicy": "Never",
            "securityContext": chart_security()[0],
            "containers": containers,
            **spec,
        },
    }


def wait_phase(core: client.CoreV1Api, namespace: str, name: str, phases: set[str]) -> Any:
    deadline = time.monotonic() + POD_TIMEOUT
    while True:
        found = core.read_namespaced_pod(name, namespace)
        if found.status.phase in phases:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"pod {name} still {found.status.phase}: {found.status}")
        time.sleep(0.3)


def run_to_end(core: client.CoreV1Api, namespace: str, body: dict[str, Any]) -> Any:
    core.create_namespaced_pod(namespace, body)
    return wait_phase(core, namespace, body["metadata"]["name"], {"Succeeded", "Failed"})


def terminated(statuses: list[Any], name: str) -> Any:
    return next(s for s in statuses if s.name == name).state.terminated


def test_restricted_pod_runs_to_completed_with_termination_message(
    core: client.CoreV1Api, restricted: str
) -> None:
    script = (
        "id -u; touch /root-is-writable 2>&1; echo ok > /tmp/scratch && echo tmp-writable; "
        "echo 'finished: 3 applied' > /dev/termination-log"
    )
    body = pod(
        "restricted",
        [container("main", script, volumeMounts=[{"name": "tmp", "mountPath": "/tmp"}])],
        volumes=[{"name": "tmp", "emptyDir": {}}],
    )
    done = run_to_end(core, restricted, body)
    assert done.status.phase == "Succeeded"
    state = terminated(done.status.container_statuses, "main")
    assert (state.exit_code, state.reason, state.message) == (
        0,
        "Completed",
        "finished: 3 applied\n",
    )
    log = core.read_namespaced_pod_log("restricted", restricted, container="main")
    assert log.splitlines()[0] == "65532"  # runAsUser enforced
    assert "Read-only file system" in log  # readOnlyRootFilesystem enforced
    assert "tmp-writable" in log


def test_native_sidecar_starts_first_and_stops_last(
    core: client.CoreV1Api, restricted: str
) -> None:
    """The main container starts once the sidecar's startup probe passes; the sidecar is told
    to stop only after the main container has exited (what the lock sidecar relies on)."""
    events = "/shared/events"
    sidecar = container(
        "sidecar",
        f"echo side-start >> {events}; "
        f"trap 'echo side-stop >> {events}; cp {events} /dev/termination-log; exit 0' TERM; "
        "while true; do sleep 0.1; done",
        restartPolicy="Always",
        startupProbe={"exec": {"command": ["test", "-s", events]}, "periodSeconds": 1},
        volumeMounts=[{"name": "shared", "mountPath": "/shared"}],
    )
    main = container(
        "main",
        f"echo main-start >> {events}; sleep 1; echo main-done >> {events}",
        volumeMounts=[{"name": "shared", "mountPath": "/shared"}],
    )
    body = pod(
        "sidecar", [main], initContainers=[sidecar], volumes=[{"name": "shared", "emptyDir": {}}]
    )
    done = run_to_end(core, restricted, body)
    assert done.status.phase == "Succeeded"
    side = terminated(done.status.init_container_statuses, "sidecar")
    assert side.message.split() == ["side-start", "main-start", "main-done", "side-stop"]


def test_cluster_ip_service_routes_to_a_pod(core: client.CoreV1Api, restricted: str) -> None:
    server = container(
        "web",
        "mkdir -p /tmp/www && echo hello-through-service > /tmp/www/index.html && "
        "exec busybox httpd -f -p 8080 -h /tmp/www",
        readinessProbe={"tcpSocket": {"port": 8080}, "periodSeconds": 1},
        volumeMounts=[{"name": "tmp", "mountPath": "/tmp"}],
    )
    body = pod("web", [server], volumes=[{"name": "tmp", "emptyDir": {}}])
    core.create_namespaced_pod(restricted, body)
    service = {
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }
    cluster_ip = core.create_namespaced_service(restricted, service).spec.cluster_ip
    wait_phase(core, restricted, "web", {"Running"})
    # bash's /dev/tcp: the static busybox's wget crashes in this image.
    fetch = (
        f"for i in $(seq 50); do exec 3<>/dev/tcp/{cluster_ip}/80 && break; sleep 0.2; done; "
        "printf 'GET / HTTP/1.0\\r\\n\\r\\n' >&3; timeout 5 cat <&3 | tail -n 1"
    )
    done = run_to_end(core, restricted, pod("client", [container("get", fetch)]))
    log = core.read_namespaced_pod_log("client", restricted, container="get")
    assert (done.status.phase, log.strip()) == ("Succeeded", "hello-through-service")


def test_pod_reaches_the_api_server_in_cluster(
    core: client.CoreV1Api, restricted: str, node_images: set[str] | None
) -> None:
    """In-cluster config: the `kubernetes` Service (kube-proxy to the advertised address), the
    mounted service account token and CA; answered 403 because the account may not list."""
    if LOCKSTEP_IMAGE not in (node_images or set()):
        pytest.skip(f"{LOCKSTEP_IMAGE} is not built yet (make image) or not imported")
    script = (
        "import kubernetes as k\n"
        "k.config.load_incluster_config()\n"
        "try:\n"
        "    k.client.CoreV1Api().list_namespaced_pod('kube-system')\n"
        "except k.client.exceptions.ApiException as e:\n"
        "    print(e.status)\n"
    )
    main = container("api", "", image=LOCKSTEP_IMAGE)
    main["command"] = ["python", "-c", script]
    done = run_to_end(core, restricted, pod("incluster", [main]))
    log = core.read_namespaced_pod_log("incluster", restricted, container="api")
    assert (done.status.phase, log.strip()) == ("Succeeded", "403")


def test_pod_reaches_the_test_postgresql(
    core: client.CoreV1Api, restricted: str, postgres_admin_url: str, pod_db_host: str
) -> None:
    """The database listens on the node's bridge address too; a pod's SSLRequest is answered
    by PostgreSQL itself ('N': no TLS on the test server)."""
    port = make_url(postgres_admin_url).port
    script = (
        f"exec 3<>/dev/tcp/{pod_db_host}/{port} || exit 1; "
        "printf '\\x00\\x00\\x00\\x08\\x04\\xd2\\x16\\x2f' >&3; head -c 1 <&3"
    )
    done = run_to_end(core, restricted, pod("db", [container("ping", script)]))
    log = core.read_namespaced_pod_log("db", restricted, container="ping")
    assert (done.status.phase, log) == ("Succeeded", "N")


def test_the_gateway_address_stays_when_pods_leave_the_bridge(
    core: client.CoreV1Api, restricted: str
) -> None:
    """Pods keep the gateway's hardware address in their ARP cache; a Linux bridge whose address
    was never set takes its lowest port's, so it changed whenever such a veth left, and a
    running pod's packets to the host (its database session) were lost for ~30 s."""
    from testbed.node import host

    sysfs = Path("/sys/class/net") / host.BRIDGE
    before = (sysfs / "address").read_text().strip()
    assert (sysfs / "addr_assign_type").read_text().strip() == "3"  # NET_ADDR_SET: never changes
    for name in ("leaver-a", "leaver-b"):
        done = run_to_end(core, restricted, pod(name, [container("main", "true")]))
        assert done.status.phase == "Succeeded"
        core.delete_namespaced_pod(name, restricted, grace_period_seconds=0)
    deadline = time.monotonic() + POD_TIMEOUT
    while core.list_namespaced_pod(restricted).items and time.monotonic() < deadline:
        time.sleep(0.3)
    assert (sysfs / "address").read_text().strip() == before == host.BRIDGE_MAC
