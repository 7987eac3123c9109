"""The expand/contract example (examples/expand-contract) as e2e tests drive it.

Shared by the operator-process tests (test_gate.py) and the Helm-installed ones
(test_chart_install.py): the documents, the app's Deployment per version, and what the tests
look for in its pods.
"""

from __future__ import annotations

from typing import Any

import yaml
from kubernetes import client

from testbed.kubetest import REPO

EXAMPLE = REPO / "examples" / "expand-contract"
APP = "lockstep-examples/expand-contract"
GATE = "lockstep.dev/migration"


def documents(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((EXAMPLE / name).read_text()) if d]


def migration_files(*versions: int) -> dict[str, str]:
    """The example's SQL files (V and U) of the given versions; all of them without versions."""
    (config_map,) = [d for d in documents("01-expand.yaml") if d["kind"] == "ConfigMap"]
    files: dict[str, str] = config_map["data"]
    wanted = set(versions)
    return {
        name: sql
        for name, sql in files.items()
        if not wanted or int(name[1 : name.index("__")]) in wanted
    }


def expand(target: str, version: int) -> dict[str, Any]:
    (body,) = [d for d in documents("01-expand.yaml") if d["kind"] == "DatabaseMigration"]
    body["spec"].update(target=target, image=f"{APP}:{version}")
    return body


def deployment(version: int) -> dict[str, Any]:
    (body,) = documents("02-app.yaml")
    container = body["spec"]["template"]["spec"]["containers"][0]
    container["image"] = f"{APP}:{version}"
    for variable in container["env"]:
        if variable["name"] == "APP_VERSION":
            variable["value"] = str(version)
    return body


def app_pods(api: client.ApiClient, namespace: str) -> list[client.V1Pod]:
    """The app's pods that are not being deleted."""
    pods = client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector="app=web").items
    return [p for p in pods if p.metadata.deletion_timestamp is None]


def image_of(pod: client.V1Pod) -> str:
    return str(pod.spec.containers[0].image)


def gated(pod: client.V1Pod) -> bool:
    return any(g.name == GATE for g in pod.spec.scheduling_gates or [])


def ready(pod: client.V1Pod) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def rolled_out(api: client.ApiClient, namespace: str, version: int) -> bool:
    status = client.AppsV1Api(api).read_namespaced_deployment("web", namespace).status
    on_version = [p for p in app_pods(api, namespace) if image_of(p) == f"{APP}:{version}"]
    return (
        status.updated_replicas == 2
        and status.available_replicas == 2
        and (status.replicas or 0) == 2
        and len([p for p in on_version if ready(p)]) == 2
    )


def new_pods_gated_old_serving(api: client.ApiClient, namespace: str) -> bool:
    """app:2 pods exist, all held by the gate and unscheduled, while two app:1 pods serve."""
    pods = app_pods(api, namespace)
    new = [p for p in pods if image_of(p) == f"{APP}:2"]
    old = [p for p in pods if image_of(p) == f"{APP}:1"]
    return (
        bool(new)
        and all(gated(p) and not p.spec.node_name for p in new)
        and len([p for p in old if ready(p)]) == 2
    )
