"""The objects the reconciler, the gate and `lockstep wait` read and write: Secrets and
ConfigMaps of a spec, Jobs and their pods, DatabaseMigrations, scheduling gates, workloads.

The real side of `controller.cluster.KubeApi` (the reconciler's injected client).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

import urllib3
from kubernetes.client.exceptions import ApiException

from lockstep import constants
from lockstep.kube import api

_SECRET = "/api/v1/namespaces/{namespace}/secrets/{name}"  # noqa: S105 - a URL path
_CONFIG_MAP = "/api/v1/namespaces/{namespace}/configmaps/{name}"
_JOBS = "/apis/batch/v1/namespaces/{namespace}/jobs"
_JOB = "/apis/batch/v1/namespaces/{namespace}/jobs/{name}"
_PODS = "/api/v1/namespaces/{namespace}/pods"
_POD = "/api/v1/namespaces/{namespace}/pods/{name}"
_MIGRATIONS = f"/apis/{constants.GROUP}/{constants.VERSION}/namespaces/{{namespace}}"
_MIGRATION = f"{_MIGRATIONS}/{constants.PLURAL}/{{name}}"
_WORKLOADS = {
    "Deployment": "/apis/apps/v1/namespaces/{namespace}/deployments/{name}",
    "StatefulSet": "/apis/apps/v1/namespaces/{namespace}/statefulsets/{name}",
}


def read_secret_value(namespace: str, name: str, key: str) -> str:
    """The decoded value of one key of a Secret. The value is never logged by this module."""
    data = read_secret_raw(namespace, name)
    if key not in data:
        raise api.NotFoundError(f"key {key!r} in Secret {namespace}/{name}")
    return base64.b64decode(data[key]).decode()


def read_secret_raw(namespace: str, name: str) -> dict[str, str]:
    """A Secret's data as the API serves it (base64 values), to keep in the operator's memory
    (controller.inputs); nothing here logs or returns it decoded."""
    try:
        response = api.request("GET", _SECRET, path_params={"namespace": namespace, "name": name})
    except ApiException as error:
        raise api.translate(error, f"Secret {namespace}/{name}") from None
    return {str(k): str(v) for k, v in (api.plain_json(response).get("data") or {}).items()}


def read_config_map_data(namespace: str, name: str) -> dict[str, str]:
    try:
        where = {"namespace": namespace, "name": name}
        response = api.request("GET", _CONFIG_MAP, path_params=where)
    except ApiException as error:
        raise api.translate(error, f"ConfigMap {namespace}/{name}") from None
    return dict(api.plain_json(response).get("data") or {})


def create_job(namespace: str, body: Mapping[str, Any]) -> None:
    """Create a Job; ConflictError when a Job of that name exists (the run is already there)."""
    try:
        where = {"namespace": namespace}
        response = api.request("POST", _JOBS, path_params=where, body=dict(body))
        response.drain_conn()  # unread answer, no model; frees the connection
    except ApiException as error:
        raise api.translate(error, f"Job {namespace}/{body['metadata']['name']}") from None


def delete_job(namespace: str, name: str) -> None:
    """Delete a Job and, in the background, its pods (which ends their processes)."""
    try:
        where = {"namespace": namespace, "name": name}
        query = {"propagationPolicy": "Background"}
        api.request("DELETE", _JOB, path_params=where, query=query).drain_conn()
    except ApiException as error:
        if error.status != 404:
            raise api.translate(error, f"Job {namespace}/{name}") from None


def label_job(namespace: str, name: str, labels: Mapping[str, str]) -> None:
    """Merge `labels` into a Job's pods' labels, then the Job's (so the Job's watch event finds
    its pods labelled); a pod or Job gone meanwhile is skipped."""
    patch = {"metadata": {"labels": dict(labels)}}
    for pod in [str(p["metadata"]["name"]) for p in _pods_of_job(namespace, name)]:
        _patch_unless_gone(f"Pod {namespace}/{pod}", _POD, namespace, pod, patch)
    _patch_unless_gone(f"Job {namespace}/{name}", _JOB, namespace, name, patch)


def _patch_unless_gone(
    what: str, path: str, namespace: str, name: str, patch: dict[str, Any]
) -> None:
    """A strategic merge patch (what the generated patch methods sent for a dict)."""
    where = {"namespace": namespace, "name": name}
    try:
        response = api.request(
            "PATCH", path, path_params=where, body=patch, content_type=api.STRATEGIC_MERGE_PATCH
        )
        response.drain_conn()  # no model; frees the connection
    except ApiException as error:
        if error.status != 404:
            raise api.translate(error, what) from None


def get_migration(namespace: str, name: str) -> dict[str, Any]:
    try:
        where = {"namespace": namespace, "name": name}
        response = api.request("GET", _MIGRATION, path_params=where)
    except ApiException as error:
        raise api.translate(error, f"DatabaseMigration {namespace}/{name}") from None
    return api.plain_json(response)


def patch_migration_status(namespace: str, name: str, status: Mapping[str, Any]) -> None:
    """Merge-patch the status subresource (lists such as conditions are replaced whole)."""
    try:
        response = api.request(
            "PATCH",
            _MIGRATION + "/status",
            path_params={"namespace": namespace, "name": name},
            body={"status": dict(status)},
            content_type=api.MERGE_PATCH,
        )
        response.drain_conn()  # the watch brings the new body
    except ApiException as error:
        raise api.translate(error, f"DatabaseMigration {namespace}/{name} status") from None


# What `list_page` lists: (API group version, plural, the kind its items lack in a list).
_LISTED = {"jobs": ("batch/v1", "Job"), "pods": ("v1", "Pod")}


def _list(plural: str, namespace: str | None, query: api.Query) -> Any:
    """GET every Job or pod, in one namespace or (None) in all of them; the response unread."""
    version = _LISTED[plural][0]
    prefix = "/api/v1" if version == "v1" else f"/apis/{version}"
    if namespace is None:
        return api.request("GET", f"{prefix}/{plural}", query=query)
    path, where = f"{prefix}/namespaces/{{namespace}}/{plural}", {"namespace": namespace}
    return api.request("GET", path, path_params=where, query=query)


def list_page(
    plural: str, namespace: str | None, label_selector: str, continue_token: str, limit: int
) -> tuple[list[dict[str, Any]], str]:
    """One page of Jobs or pods (all namespaces when `namespace` is None) as plain JSON, each
    with its apiVersion and kind, and the token of the next page ("" after the last).
    ExpiredError when the token has outlived the API server's history."""
    version, kind = _LISTED[plural]
    query: api.Query = {
        "labelSelector": label_selector,
        "limit": limit,
        "continue": continue_token or None,
    }
    try:
        response = _list(plural, namespace, query)
    except ApiException as error:
        raise api.translate(error, f"list of {plural}") from None
    except (urllib3.exceptions.HTTPError, OSError) as error:
        raise api.KubeError(f"list of {plural}: API unreachable ({type(error).__name__})") from None
    answer = api.plain_json(response)
    items: list[dict[str, Any]] = answer.get("items") or []
    for item in items:
        item.setdefault("apiVersion", version)
        item.setdefault("kind", kind)
    return items, str((answer.get("metadata") or {}).get("continue") or "")


# A label no pod carries: the probe's stream then holds only the closing bookmark.
_PROBE_SELECTOR = f"{constants.GROUP}/streaming-list-probe=none"
# The bookmark that ends a streamed initial list carries this annotation.
_INITIAL_EVENTS_END = "k8s.io/initial-events-end"


def serves_streaming_lists(namespace: str | None) -> bool:
    """Whether the API server streams a watch's initial list (`sendInitialEvents`, the
    WatchList feature: on by default since Kubernetes 1.34): True once the bookmark that ends
    the (empty) initial list arrives. A server with the feature off refuses the request (4xx);
    one older than 1.27 ignores the parameter and sends no such bookmark: both are False.
    KubeError when the server cannot answer now (unreachable, 5xx, 429): ask again."""
    query: api.Query = {
        "labelSelector": _PROBE_SELECTOR,
        "watch": True,
        "sendInitialEvents": True,
        "resourceVersionMatch": "NotOlderThan",
        "allowWatchBookmarks": True,
        "timeoutSeconds": 1,
    }
    try:  # the response unread: a stream of watch events, one JSON document a line
        response = _list("pods", namespace, query)
    except ApiException as error:
        if error.status is not None and 400 <= error.status < 500 and error.status != 429:
            return False  # refused: the server does not stream lists
        raise api.translate(error, "streaming-list probe") from None
    except (urllib3.exceptions.HTTPError, OSError) as error:
        raise api.KubeError(
            f"streaming-list probe: API unreachable ({type(error).__name__})"
        ) from None
    try:
        for line in response:
            event = json.loads(line) if line.strip() else {}
            annotations = (event.get("object") or {}).get("metadata", {}).get("annotations") or {}
            if annotations.get(_INITIAL_EVENTS_END) == "true":
                return True
        return False  # the server ignored sendInitialEvents (older than 1.27): a plain watch
    except ValueError:
        return False
    finally:
        response.close()


def job_pod(namespace: str, job: str) -> dict[str, Any] | None:
    """The newest pod of a Job, as a plain dict, or None when it is gone."""
    pods = _pods_of_job(namespace, job)
    if not pods:
        return None
    return max(pods, key=lambda p: str(p["metadata"].get("creationTimestamp", "")))


def _pods_of_job(namespace: str, job: str) -> list[dict[str, Any]]:
    """Every pod the Job controller made for `job` (its `job-name` label), as plain JSON."""
    try:
        query = {"labelSelector": f"job-name={job}"}
        response = api.request("GET", _PODS, path_params={"namespace": namespace}, query=query)
    except ApiException as error:
        raise api.translate(error, f"pods of Job {namespace}/{job}") from None
    pods: list[dict[str, Any]] = api.plain_json(response).get("items") or []
    return pods


def read_log_tail(namespace: str, pod: str, container: str, limit_bytes: int) -> str:
    """The end of a container's log. Empty when the log cannot be read (node gone, pod deleted)."""
    try:
        where = {"namespace": namespace, "name": pod}
        query: api.Query = {"container": container, "tailLines": 200}
        response = api.request("GET", _POD + "/log", path_params=where, query=query)
    except ApiException:
        return ""
    text = bytes(response.data).decode(errors="replace")
    return text[-limit_bytes:]


def remove_scheduling_gate(
    namespace: str, pod: str, remaining: list[dict[str, Any]], resource_version: str
) -> bool:
    """Replace the pod's scheduling gates with `remaining`; False if the pod changed or is gone."""
    patch: list[dict[str, Any]] = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": resource_version},
        {"op": "replace", "path": "/spec/schedulingGates", "value": remaining},
    ]
    try:
        where = {"namespace": namespace, "name": pod}
        response = api.request(
            "PATCH", _POD, path_params=where, body=patch, content_type=api.JSON_PATCH
        )
        response.drain_conn()
    except ApiException as error:
        if error.status in (404, 409, 422):
            return False
        raise api.translate(error, f"Pod {namespace}/{pod}") from None
    return True


def read_workload(namespace: str, kind: str, name: str) -> dict[str, Any] | None:
    """A Deployment or StatefulSet as plain JSON; None when it does not exist."""
    where = {"namespace": namespace, "name": name}
    try:
        response = api.request("GET", _WORKLOADS[kind], path_params=where)
    except ApiException as error:
        if error.status == 404:
            return None
        raise api.translate(error, f"{kind} {namespace}/{name}") from None
    return api.plain_json(response)
