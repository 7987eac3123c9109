"""The e2e node: what Lockstep's tests need from pods, on the local pod agent or on kind.

Each test uses plain Kubernetes objects and public images (busybox, python),
so it passes on a real cluster too; on the local control plane the pod agent
maps those images to local programs (tools/testbed/images.yaml).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

pytestmark = pytest.mark.e2e

T = TypeVar("T")
BUSYBOX = "busybox:1.36"
PYTHON = "python:3.12-slim"
MERGE_PATCH = "application/merge-patch+json"
RESTRICTED_CONTAINER_SECURITY = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "readOnlyRootFilesystem": True,
}
RESTRICTED_POD_SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": 65534,
    "runAsGroup": 65534,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 90.0) -> T:
    """Poll ``probe`` until it returns something truthy; fail with ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.5)


def busybox_job(name: str, script: str, **container: Any) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "terminationGracePeriodSeconds": 5,
                    "containers": [
                        {
                            "name": "main",
                            "image": BUSYBOX,
                            "command": ["sh", "-c", script],
                            **container,
                        }
                    ],
                }
            },
        },
    }


def busybox_pod(name: str, script: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 5,
            "containers": [{"name": "main", "image": BUSYBOX, "command": ["sh", "-c", script]}],
            **spec,
        },
    }


def job_finished(batch: client.BatchV1Api, namespace: str, name: str) -> str | None:
    """'Complete' or 'Failed' once the Job has finished."""
    job = batch.read_namespaced_job_status(name, namespace)
    for condition in job.status.conditions or []:
        if condition.type in ("Complete", "Failed") and condition.status == "True":
            return str(condition.type)
    return None


def job_pod(core: client.CoreV1Api, namespace: str, job: str) -> client.V1Pod:
    pods = core.list_namespaced_pod(namespace, label_selector=f"job-name={job}").items
    assert len(pods) == 1, [p.metadata.name for p in pods]
    return pods[0]


def pod_phase(core: client.CoreV1Api, namespace: str, name: str) -> str:
    return str(core.read_namespaced_pod_status(name, namespace).status.phase)


def wait_for_phase(
    core: client.CoreV1Api, namespace: str, name: str, *phases: str, timeout: float = 90.0
) -> client.V1Pod:
    def probe() -> client.V1Pod | None:
        pod = core.read_namespaced_pod_status(name, namespace)
        return pod if pod.status.phase in phases else None

    return wait_for(f"pod {name} to be {'/'.join(phases)}", probe, timeout)


def pod_gone(core: client.CoreV1Api, namespace: str, name: str) -> bool:
    try:
        core.read_namespaced_pod(name, namespace)
    except ApiException as error:
        if error.status == 404:
            return True
        raise
    return False


def test_job_completes_and_its_log_is_served(k8s: client.ApiClient, namespace: str) -> None:
    batch, core = client.BatchV1Api(k8s), client.CoreV1Api(k8s)
    batch.create_namespaced_job(namespace, busybox_job("hello", "echo hi; exit 0"))

    assert wait_for("the Job to finish", lambda: job_finished(batch, namespace, "hello")) == (
        "Complete"
    )

    pod = job_pod(core, namespace, "hello")
    assert pod.status.phase == "Succeeded"
    terminated = pod.status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.reason) == (0, "Completed")
    assert core.read_namespaced_pod_log(pod.metadata.name, namespace) == "hi\n"
    name = pod.metadata.name
    tail = core.read_namespaced_pod_log(name, namespace, container="main", tail_lines=1)
    assert tail == "hi\n"


@pytest.mark.parametrize(
    ("script", "container", "message"),
    [
        pytest.param(
            "echo 'schema is locked' > /dev/termination-log; exit 3",
            {},
            "schema is locked",
            id="termination-log",
        ),
        pytest.param(
            "echo starting; echo 'error: relation missing' >&2; exit 3",
            {"terminationMessagePolicy": "FallbackToLogsOnError"},
            "starting\nerror: relation missing\n",
            id="fallback-to-logs",
        ),
    ],
)
def test_failing_job_reports_exit_code_and_message(
    k8s: client.ApiClient,
    namespace: str,
    script: str,
    container: dict[str, Any],
    message: str,
) -> None:
    batch, core = client.BatchV1Api(k8s), client.CoreV1Api(k8s)
    batch.create_namespaced_job(namespace, busybox_job("broken", script, **container))

    assert wait_for("the Job to finish", lambda: job_finished(batch, namespace, "broken")) == (
        "Failed"
    )

    pod = job_pod(core, namespace, "broken")
    assert pod.status.phase == "Failed"
    terminated = pod.status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.reason) == (3, "Error")
    assert terminated.message.strip() == message.strip()


def test_configmap_secret_volumes_and_env(k8s: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(k8s)
    core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "app"}, "data": {"greeting": "hello from configmap"}}
    )
    core.create_namespaced_secret(
        namespace,
        {"metadata": {"name": "db"}, "stringData": {"password": "s3cret", "url": "sqlite://x"}},
    )
    script = (
        "cat /etc/app/greeting; echo; cat /etc/db/pw.txt; echo; ls /etc/db; "
        'echo "env=$DB_PASSWORD $POD_NAMESPACE/$POD_NAME $FROM_CM"; '
        "test -s /var/run/secrets/kubernetes.io/serviceaccount/token && echo token-ok; "
        "(echo cannot-write > /etc/app/x) 2>/dev/null || echo read-only"
    )
    pod = busybox_pod(
        "reader",
        script,
        volumes=[
            {"name": "app", "configMap": {"name": "app"}},
            {
                "name": "db",
                "secret": {"secretName": "db", "items": [{"key": "password", "path": "pw.txt"}]},
            },
        ],
    )
    main = pod["spec"]["containers"][0]
    main["volumeMounts"] = [
        {"name": "app", "mountPath": "/etc/app"},
        {"name": "db", "mountPath": "/etc/db", "readOnly": True},
    ]
    main["env"] = [
        {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
        {"name": "FROM_CM", "valueFrom": {"configMapKeyRef": {"name": "app", "key": "greeting"}}},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {
            "name": "POD_NAMESPACE",
            "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
        },
    ]
    core.create_namespaced_pod(namespace, pod)

    assert wait_for_phase(core, namespace, "reader", "Succeeded", "Failed").status.phase == (
        "Succeeded"
    )
    assert core.read_namespaced_pod_log("reader", namespace).splitlines() == [
        "hello from configmap",
        "s3cret",
        "pw.txt",
        f"env=s3cret {namespace}/reader hello from configmap",
        "token-ok",
        "read-only",
    ]


def test_native_sidecar_starts_first_and_stops_last(k8s: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(k8s)
    sidecar_script = (
        "trap 'echo sidecar stopping; exit 0' TERM; "
        "sleep 1; echo sidecar-up >> /shared/events; touch /shared/ready; "
        "while true; do sleep 0.2; done"
    )
    main_script = "echo main-start >> /shared/events; cat /shared/events"
    pod = busybox_pod("with-sidecar", main_script)
    pod["spec"]["volumes"] = [{"name": "shared", "emptyDir": {}}]
    mount = [{"name": "shared", "mountPath": "/shared"}]
    pod["spec"]["containers"][0]["volumeMounts"] = mount
    pod["spec"]["initContainers"] = [
        {
            "name": "lock",
            "image": BUSYBOX,
            "restartPolicy": "Always",
            "command": ["sh", "-c", sidecar_script],
            "volumeMounts": mount,
            "startupProbe": {
                "exec": {"command": ["test", "-f", "/shared/ready"]},
                "periodSeconds": 1,
                "failureThreshold": 30,
            },
        }
    ]
    core.create_namespaced_pod(namespace, pod)

    done = wait_for_phase(core, namespace, "with-sidecar", "Succeeded", "Failed")
    assert done.status.phase == "Succeeded"
    assert core.read_namespaced_pod_log("with-sidecar", namespace, container="main").split() == [
        "sidecar-up",
        "main-start",
    ]
    sidecar = done.status.init_container_statuses[0]
    assert sidecar.name == "lock"
    assert sidecar.state.terminated is not None
    sidecar_log = core.read_namespaced_pod_log("with-sidecar", namespace, container="lock")
    assert "sidecar stopping" in sidecar_log


def test_gated_pod_waits_for_its_gate(k8s: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(k8s)
    pod = busybox_pod("gated", "echo released")
    pod["spec"]["schedulingGates"] = [{"name": "lockstep.dev/migration"}]
    core.create_namespaced_pod(namespace, pod)

    def gated_condition() -> bool:
        conditions = core.read_namespaced_pod_status("gated", namespace).status.conditions or []
        return any(c.type == "PodScheduled" and c.reason == "SchedulingGated" for c in conditions)

    wait_for("the SchedulingGated condition", gated_condition, timeout=30)
    time.sleep(3)
    held = core.read_namespaced_pod("gated", namespace)
    assert held.status.phase == "Pending"
    assert not held.spec.node_name

    core.patch_namespaced_pod(
        "gated", namespace, [{"op": "remove", "path": "/spec/schedulingGates"}]
    )

    released = wait_for_phase(core, namespace, "gated", "Succeeded", "Failed")
    assert released.status.phase == "Succeeded"
    assert released.spec.node_name
    assert core.read_namespaced_pod_log("gated", namespace) == "released\n"


def test_deleting_a_running_pod_finishes(k8s: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(k8s)
    # One pod exits on SIGTERM, one ignores it and needs the SIGKILL after its grace period.
    scripts = {
        "polite": "trap 'exit 0' TERM; while true; do sleep 0.2; done",
        "stubborn": "trap '' TERM; while true; do sleep 0.2; done",
    }
    for name, script in scripts.items():
        core.create_namespaced_pod(
            namespace, busybox_pod(name, script, terminationGracePeriodSeconds=2)
        )
    for name in scripts:
        wait_for_phase(core, namespace, name, "Running")

    started = time.monotonic()
    for name in scripts:
        core.delete_namespaced_pod(name, namespace)
    for name in scripts:
        wait_for(f"pod {name} to be gone", lambda name=name: pod_gone(core, namespace, name), 30)
    assert time.monotonic() - started < 30


def test_deployment_of_two_web_servers_becomes_available(
    k8s: client.ApiClient, namespace: str
) -> None:
    apps, core = client.AppsV1Api(k8s), client.CoreV1Api(k8s)
    labels = {"app": "web"}
    # Both replicas listen on port 8080 of their own pod IP (one loopback address each locally).
    container = {
        "name": "web",
        "image": PYTHON,
        "command": ["python", "-m", "http.server", "8080", "--bind", "$(POD_IP)"],
        "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
        "ports": [{"name": "http", "containerPort": 8080}],
        "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1},
    }
    deployment = {
        "metadata": {"name": "web", "labels": labels},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [container], "terminationGracePeriodSeconds": 5},
            },
        },
    }
    apps.create_namespaced_deployment(namespace, deployment)

    def available() -> bool:
        status = apps.read_namespaced_deployment_status("web", namespace).status
        conditions = {c.type: c.status for c in status.conditions or []}
        return conditions.get("Available") == "True" and status.ready_replicas == 2

    wait_for("the Deployment to be Available with 2 ready replicas", available, timeout=120)
    pods = core.list_namespaced_pod(namespace, label_selector="app=web").items
    running = [p for p in pods if p.status.phase == "Running"]
    assert len(running) == 2
    assert len({p.status.pod_ip for p in running}) == 2
    assert all(p.status.container_statuses[0].ready for p in running)


def test_restricted_namespace_runs_compliant_pods(k8s: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(k8s)
    labels = {"pod-security.kubernetes.io/enforce": "restricted"}
    core.patch_namespace(namespace, {"metadata": {"labels": labels}}, _content_type=MERGE_PATCH)

    with pytest.raises(ApiException) as rejected:
        core.create_namespaced_pod(namespace, busybox_pod("privileged", "true"))
    assert rejected.value.status == 403

    pod = busybox_pod("compliant", "echo compliant; touch /scratch/ok && echo scratch-ok")
    pod["spec"]["securityContext"] = RESTRICTED_POD_SECURITY
    pod["spec"]["volumes"] = [{"name": "scratch", "emptyDir": {}}]
    main = pod["spec"]["containers"][0]
    main["securityContext"] = RESTRICTED_CONTAINER_SECURITY
    main["volumeMounts"] = [{"name": "scratch", "mountPath": "/scratch"}]
    core.create_namespaced_pod(namespace, pod)

    assert wait_for_phase(core, namespace, "compliant", "Succeeded", "Failed").status.phase == (
        "Succeeded"
    )
    assert core.read_namespaced_pod_log("compliant", namespace) == "compliant\nscratch-ok\n"


def test_in_cluster_client_reaches_the_apiserver(
    k8s: client.ApiClient, namespace: str, local_cluster: bool
) -> None:
    """What the operator and the migration runner do: in-cluster config from the pod's token."""
    if not local_cluster:
        pytest.skip("needs the kubernetes package inside the image (the local venv has it)")
    core = client.CoreV1Api(k8s)
    script = (
        "from kubernetes import client, config; config.load_incluster_config(); "
        "print(client.VersionApi().get_code().git_version)"
    )
    pod = busybox_pod("in-cluster", "")
    pod["spec"]["containers"][0].update(image=PYTHON, command=["python", "-c", script])
    core.create_namespaced_pod(namespace, pod)

    done = wait_for_phase(core, namespace, "in-cluster", "Succeeded", "Failed")
    log = core.read_namespaced_pod_log("in-cluster", namespace)
    assert done.status.phase == "Succeeded", log
    assert log.startswith("v1.")


def test_unknown_image_fails_the_pod(
    k8s: client.ApiClient, namespace: str, local_cluster: bool
) -> None:
    if not local_cluster:
        pytest.skip("a real node keeps retrying the pull (ImagePullBackOff) instead")
    core = client.CoreV1Api(k8s)
    pod = busybox_pod("unknown", "true")
    pod["spec"]["containers"][0]["image"] = "registry.example.com/nothing:1.0"
    core.create_namespaced_pod(namespace, pod)

    failed = wait_for_phase(core, namespace, "unknown", "Failed", "Succeeded")
    assert failed.status.phase == "Failed"
    waiting = failed.status.container_statuses[0].state.waiting
    assert waiting.reason == "ErrImagePull"
    assert "images.yaml" in waiting.message
