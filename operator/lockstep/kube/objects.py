"""The objects the reconciler, the gate and `lockstep wait` read and write: Secrets and
ConfigMaps of a spec, Jobs and their pods, DatabaseMigrations, scheduling gates, workloads.

The real side of `controller.cluster.KubeApi` (the reconciler's injected client).
"""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import Callable, Mapping
from typing import Any, cast

import urllib3
from kubernetes.client.exceptions import ApiException

from lockstep import constants
from lockstep.kube import api


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
        response = api.core().read_namespaced_secret(name, namespace, _preload_content=False)
    except ApiException as error:
        raise api.translate(error, f"Secret {namespace}/{name}") from None
    return {str(k): str(v) for k, v in (api.plain_json(response).get("data") or {}).items()}


def read_config_map_data(namespace: str, name: str) -> dict[str, str]:
    try:
        response = api.core().read_namespaced_config_map(name, namespace, _preload_content=False)
    except ApiException as error:
        raise api.translate(error, f"ConfigMap {namespace}/{name}") from None
    return dict(api.plain_json(response).get("data") or {})


def create_job(namespace: str, body: Mapping[str, Any]) -> None:
    """Create a Job; ConflictError when a Job of that name exists (the run is already there)."""
    try:
        # The client serialises plain dicts as they are; its stubs only name the model class.
        job = dict(body)
        response = api.batch().create_namespaced_job(namespace, job, _preload_content=False)  # type: ignore[arg-type]
        cast(Any, response).drain_conn()  # unread answer, no model; frees the connection
    except ApiException as error:
        raise api.translate(error, f"Job {namespace}/{body['metadata']['name']}") from None


def delete_job(namespace: str, name: str) -> None:
    """Delete a Job and, in the background, its pods (which ends their processes)."""
    try:
        api.batch().delete_namespaced_job(name, namespace, propagation_policy="Background")
    except ApiException as error:
        if error.status != 404:
            raise api.translate(error, f"Job {namespace}/{name}") from None


def label_job(namespace: str, name: str, labels: Mapping[str, str]) -> None:
    """Merge `labels` into a Job's pods' labels, then the Job's (so the Job's watch event finds
    its pods labelled); a pod or Job gone meanwhile is skipped."""
    patch = {"metadata": {"labels": dict(labels)}}
    for pod in [str(p["metadata"]["name"]) for p in _pods_of_job(namespace, name)]:
        call = functools.partial(api.core().patch_namespaced_pod, pod, namespace, patch)
        _unless_gone(f"Pod {namespace}/{pod}", call)
    _unless_gone(
        f"Job {namespace}/{name}",
        functools.partial(api.batch().patch_namespaced_job, name, namespace, patch),
    )


def _unless_gone(what: str, call: Callable[..., Any]) -> None:
    try:
        cast(Any, call(_preload_content=False)).drain_conn()  # no model; frees the connection
    except ApiException as error:
        if error.status != 404:
            raise api.translate(error, what) from None


def get_migration(namespace: str, name: str) -> dict[str, Any]:
    try:
        result = api.custom().get_namespaced_custom_object(
            constants.GROUP, constants.VERSION, namespace, constants.PLURAL, name
        )
    except ApiException as error:
        raise api.translate(error, f"DatabaseMigration {namespace}/{name}") from None
    return cast(dict[str, Any], result)


def patch_migration_status(namespace: str, name: str, status: Mapping[str, Any]) -> None:
    """Merge-patch the status subresource (lists such as conditions are replaced whole)."""
    try:
        response = api.custom().patch_namespaced_custom_object_status(
            constants.GROUP,
            constants.VERSION,
            namespace,
            constants.PLURAL,
            name,
            {"status": dict(status)},
            _preload_content=False,
        )
        cast(Any, response).drain_conn()  # the watch brings the new body
    except ApiException as error:
        raise api.translate(error, f"DatabaseMigration {namespace}/{name} status") from None


# What `list_page` lists: (API group version, plural, the kind its items lack in a list).
_LISTED = {"jobs": ("batch/v1", "Job"), "pods": ("v1", "Pod")}


def list_page(
    plural: str, namespace: str | None, label_selector: str, continue_token: str, limit: int
) -> tuple[list[dict[str, Any]], str]:
    """One page of Jobs or pods (all namespaces when `namespace` is None) as plain JSON, each
    with its apiVersion and kind, and the token of the next page ("" after the last).
    ExpiredError when the token has outlived the API server's history."""
    version, kind = _LISTED[plural]
    arguments: dict[str, Any] = {"label_selector": label_selector, "limit": limit}
    if continue_token:
        arguments["_continue"] = continue_token
    response: Any
    try:
        if plural == "jobs":
            response = (
                api.batch().list_job_for_all_namespaces(_preload_content=False, **arguments)
                if namespace is None
                else api.batch().list_namespaced_job(namespace, _preload_content=False, **arguments)
            )
        else:
            response = (
                api.core().list_pod_for_all_namespaces(_preload_content=False, **arguments)
                if namespace is None
                else api.core().list_namespaced_pod(namespace, _preload_content=False, **arguments)
            )
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
    arguments: dict[str, Any] = {
        "label_selector": _PROBE_SELECTOR,
        "watch": True,
        "send_initial_events": True,
        "resource_version_match": "NotOlderThan",
        "allow_watch_bookmarks": True,
        "timeout_seconds": 1,
        "_preload_content": False,
    }
    try:
        response = (
            api.core().list_pod_for_all_namespaces(**arguments)
            if namespace is None
            else api.core().list_namespaced_pod(namespace, **arguments)
        )
    except ApiException as error:
        if error.status is not None and 400 <= error.status < 500 and error.status != 429:
            return False  # refused: the server does not stream lists
        raise api.translate(error, "streaming-list probe") from None
    except (urllib3.exceptions.HTTPError, OSError) as error:
        raise api.KubeError(
            f"streaming-list probe: API unreachable ({type(error).__name__})"
        ) from None
    try:
        for line in cast(Any, response):
            event = json.loads(line) if line.strip() else {}
            annotations = (event.get("object") or {}).get("metadata", {}).get("annotations") or {}
            if annotations.get(_INITIAL_EVENTS_END) == "true":
                return True
        return False  # the server ignored sendInitialEvents (older than 1.27): a plain watch
    except ValueError:
        return False
    finally:
        cast(Any, response).close()


def job_pod(namespace: str, job: str) -> dict[str, Any] | None:
    """The newest pod of a Job, as a plain dict, or None when it is gone."""
    pods = _pods_of_job(namespace, job)
    if not pods:
        return None
    return max(pods, key=lambda p: str(p["metadata"].get("creationTimestamp", "")))


def _pods_of_job(namespace: str, job: str) -> list[dict[str, Any]]:
    """Every pod the Job controller made for `job` (its `job-name` label), as plain JSON."""
    try:
        response = api.core().list_namespaced_pod(
            namespace, label_selector=f"job-name={job}", _preload_content=False
        )
    except ApiException as error:
        raise api.translate(error, f"pods of Job {namespace}/{job}") from None
    pods: list[dict[str, Any]] = api.plain_json(response).get("items") or []
    return pods


def read_log_tail(namespace: str, pod: str, container: str, limit_bytes: int) -> str:
    """The end of a container's log. Empty when the log cannot be read (node gone, pod deleted)."""
    try:
        text: str = api.core().read_namespaced_pod_log(
            pod, namespace, container=container, tail_lines=200
        )
    except ApiException:
        return ""
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
        api.core().patch_namespaced_pod(pod, namespace, patch)
    except ApiException as error:
        if error.status in (404, 409, 422):
            return False
        raise api.translate(error, f"Pod {namespace}/{pod}") from None
    return True


def read_workload(namespace: str, kind: str, name: str) -> dict[str, Any] | None:
    """A Deployment or StatefulSet as plain JSON; None when it does not exist."""
    read = {
        "Deployment": api.apps().read_namespaced_deployment,
        "StatefulSet": api.apps().read_namespaced_stateful_set,
    }[kind]
    try:
        response = read(name, namespace, _preload_content=False)
    except ApiException as error:
        if error.status == 404:
            return None
        raise api.translate(error, f"{kind} {namespace}/{name}") from None
    result: dict[str, Any] = json.loads(cast(Any, response).data)
    return result
