"""The only module that talks to the Kubernetes API directly (through the official client).

Functions here are synchronous and small; the reconciler runs them in worker threads.
Errors are translated into Lockstep's own exceptions so callers never import the client.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from lockstep import constants

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class NotFoundError(LookupError):
    """The object does not exist (HTTP 404)."""


class ConflictError(RuntimeError):
    """The object already exists, or changed under us (HTTP 409)."""


class KubeError(RuntimeError):
    """Any other API failure; the message carries the HTTP status and reason, never a body."""


class NoClusterConfig(RuntimeError):  # noqa: N818 - reads better at the raise site
    """Neither in a pod with a service account nor given a usable kubeconfig."""


def default_namespace() -> str:
    """$POD_NAMESPACE, the pod's own namespace, else `default` (the Lease's, `lockstep wait`'s)."""
    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    with contextlib.suppress(OSError):
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
    return "default"


def load_config(kubeconfig: str | None = None) -> None:
    """In-cluster config inside a pod, else the kubeconfig (explicit path, $KUBECONFIG, ~/.kube).

    Raises :class:`NoClusterConfig` saying what was tried: a container started outside a pod,
    or a pod without its service account token, would otherwise end in the client's traceback.
    """
    in_cluster = "not in a pod"
    if kubeconfig is None:
        try:
            config.load_incluster_config()  # type: ignore[no-untyped-call]
            return
        except config.ConfigException as error:
            if os.environ.get("KUBERNETES_SERVICE_HOST"):
                in_cluster = f"in a pod, but {error}"
    try:
        config.load_kube_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
    except (config.ConfigException, OSError) as error:
        where = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
        raise NoClusterConfig(
            f"cannot reach a Kubernetes API server: {in_cluster} (no service account token), "
            f"and the kubeconfig {where} is unusable ({error}); run it in a pod with a service "
            "account, or give --kubeconfig or $KUBECONFIG"
        ) from None


@dataclass(frozen=True)
class Credentials:
    """How to reach the API server, as loaded by `load_config` (for Kopf's own client)."""

    server: str
    ca_path: str | None
    insecure: bool
    token: str | None
    scheme: str | None
    certificate_path: str | None
    private_key_path: str | None


def credentials() -> Credentials:
    """The connection that `load_config` set up: one source of truth for both clients."""
    configuration = client.Configuration.get_default_copy()
    header = configuration.get_api_key_with_prefix(
        "BearerToken"
    ) or configuration.get_api_key_with_prefix("authorization")
    parts = header.split(" ", 1) if header else []
    scheme, token = (parts[0], parts[1]) if len(parts) == 2 else (None, "".join(parts) or None)
    return Credentials(
        server=str(configuration.host),
        ca_path=configuration.ssl_ca_cert,
        insecure=not configuration.verify_ssl,
        token=token,
        scheme=scheme,
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
    )


@functools.cache
def _core() -> client.CoreV1Api:
    return client.CoreV1Api()


@functools.cache
def _batch() -> client.BatchV1Api:
    return client.BatchV1Api()


@functools.cache
def _custom() -> client.CustomObjectsApi:
    return client.CustomObjectsApi()


def _translate(error: ApiException, what: str) -> Exception:
    if error.status == 404:
        return NotFoundError(f"{what} not found")
    if error.status == 409:
        return ConflictError(f"{what}: conflict ({error.reason})")
    return KubeError(f"{what}: HTTP {error.status} {error.reason}")


def read_secret_value(namespace: str, name: str, key: str) -> str:
    """The decoded value of one key of a Secret. The value is never logged by this module."""
    data = read_secret_raw(namespace, name)
    if key not in data:
        raise NotFoundError(f"key {key!r} in Secret {namespace}/{name}")
    return base64.b64decode(data[key]).decode()


def read_secret_raw(namespace: str, name: str) -> dict[str, str]:
    """A Secret's data as the API serves it (base64 values), to keep in the operator's memory
    (controller.inputs); nothing here logs or returns it decoded."""
    try:
        response = _core().read_namespaced_secret(name, namespace, _preload_content=False)
    except ApiException as error:
        raise _translate(error, f"Secret {namespace}/{name}") from None
    return {str(k): str(v) for k, v in (_json(response).get("data") or {}).items()}


def read_config_map_data(namespace: str, name: str) -> dict[str, str]:
    try:
        response = _core().read_namespaced_config_map(name, namespace, _preload_content=False)
    except ApiException as error:
        raise _translate(error, f"ConfigMap {namespace}/{name}") from None
    return dict(_json(response).get("data") or {})


def _json(response: Any) -> dict[str, Any]:
    """A `_preload_content=False` body as plain JSON: no model classes, most of a small
    request's CPU. Reading it to the end returns the connection to the pool (urllib3)."""
    return cast(dict[str, Any], json.loads(response.data))


def create_job(namespace: str, body: Mapping[str, Any]) -> None:
    """Create a Job; ConflictError when a Job of that name exists (the run is already there)."""
    try:
        # The client serialises plain dicts as they are; its stubs only name the model class.
        job = dict(body)
        response = _batch().create_namespaced_job(namespace, job, _preload_content=False)  # type: ignore[arg-type]
        cast(Any, response).drain_conn()  # unread answer, no model; frees the connection
    except ApiException as error:
        raise _translate(error, f"Job {namespace}/{body['metadata']['name']}") from None


def delete_job(namespace: str, name: str) -> None:
    """Delete a Job and, in the background, its pods (which ends their processes)."""
    try:
        _batch().delete_namespaced_job(name, namespace, propagation_policy="Background")
    except ApiException as error:
        if error.status != 404:
            raise _translate(error, f"Job {namespace}/{name}") from None


def label_job(namespace: str, name: str, labels: Mapping[str, str]) -> None:
    """Merge `labels` into a Job's pods' labels, then the Job's (so the Job's watch event finds
    its pods labelled); a pod or Job gone meanwhile is skipped."""
    patch = {"metadata": {"labels": dict(labels)}}
    try:
        listed = _core().list_namespaced_pod(
            namespace, label_selector=f"job-name={name}", _preload_content=False
        )
    except ApiException as error:
        raise _translate(error, f"pods of Job {namespace}/{name}") from None
    for pod in [str(p["metadata"]["name"]) for p in _json(listed).get("items") or []]:
        call = functools.partial(_core().patch_namespaced_pod, pod, namespace, patch)
        _unless_gone(f"Pod {namespace}/{pod}", call)
    _unless_gone(
        f"Job {namespace}/{name}",
        functools.partial(_batch().patch_namespaced_job, name, namespace, patch),
    )


def _unless_gone(what: str, call: Callable[..., Any]) -> None:
    try:
        cast(Any, call(_preload_content=False)).drain_conn()  # no model; frees the connection
    except ApiException as error:
        if error.status != 404:
            raise _translate(error, what) from None


def get_migration(namespace: str, name: str) -> dict[str, Any]:
    try:
        result = _custom().get_namespaced_custom_object(
            constants.GROUP, constants.VERSION, namespace, constants.PLURAL, name
        )
    except ApiException as error:
        raise _translate(error, f"DatabaseMigration {namespace}/{name}") from None
    return cast(dict[str, Any], result)


def patch_migration_status(namespace: str, name: str, status: Mapping[str, Any]) -> None:
    """Merge-patch the status subresource (lists such as conditions are replaced whole)."""
    try:
        response = _custom().patch_namespaced_custom_object_status(
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
        raise _translate(error, f"DatabaseMigration {namespace}/{name} status") from None


def job_pod(namespace: str, job: str) -> dict[str, Any] | None:
    """The newest pod of a Job, as a plain dict, or None when it is gone."""
    try:
        response = _core().list_namespaced_pod(
            namespace, label_selector=f"job-name={job}", _preload_content=False
        )
    except ApiException as error:
        raise _translate(error, f"pods of Job {namespace}/{job}") from None
    # Without preloading the client returns the raw HTTP response: plain JSON, no model classes.
    pods: list[dict[str, Any]] = json.loads(cast(Any, response).data).get("items") or []
    if not pods:
        return None
    return max(pods, key=lambda p: str(p["metadata"].get("creationTimestamp", "")))


def read_log_tail(namespace: str, pod: str, container: str, limit_bytes: int) -> str:
    """The end of a container's log. Empty when the log cannot be read (node gone, pod deleted)."""
    try:
        text: str = _core().read_namespaced_pod_log(
            pod, namespace, container=container, tail_lines=200
        )
    except ApiException:
        return ""
    return text[-limit_bytes:]


@functools.cache
def _coordination() -> client.CoordinationV1Api:
    return client.CoordinationV1Api()


def read_lease(namespace: str, name: str) -> tuple[dict[str, Any], str] | None:
    """The Lease's spec and resourceVersion, or None when there is no Lease yet."""
    try:
        response = _coordination().read_namespaced_lease(name, namespace, _preload_content=False)
    except ApiException as error:
        if error.status == 404:
            return None
        raise _translate(error, f"Lease {namespace}/{name}") from None
    except (urllib3.exceptions.HTTPError, OSError) as error:
        raise KubeError(
            f"Lease {namespace}/{name}: API unreachable ({type(error).__name__})"
        ) from None
    lease = json.loads(cast(Any, response).data)
    return dict(lease.get("spec") or {}), str(lease["metadata"]["resourceVersion"])


def write_lease(
    namespace: str, name: str, spec: Mapping[str, Any], resource_version: str | None
) -> None:
    """Create the Lease, or replace it only if nobody changed it since `resource_version`.

    The optimistic concurrency of the replace is what makes two replicas unable to both win.
    """
    body: dict[str, Any] = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {constants.LABEL_NAME: "lockstep", constants.LABEL_PART_OF: "lockstep"},
        },
        "spec": dict(spec),
    }
    try:
        if resource_version is None:
            _coordination().create_namespaced_lease(namespace, body)  # type: ignore[arg-type]
        else:
            body["metadata"]["resourceVersion"] = resource_version
            _coordination().replace_namespaced_lease(name, namespace, body)  # type: ignore[arg-type]
    except ApiException as error:
        raise _translate(error, f"Lease {namespace}/{name}") from None
    except (urllib3.exceptions.HTTPError, OSError) as error:
        raise KubeError(
            f"Lease {namespace}/{name}: API unreachable ({type(error).__name__})"
        ) from None


def read_secret_data(namespace: str, name: str) -> dict[str, bytes] | None:
    """All keys of a Secret, decoded; None when it does not exist."""
    try:
        data = read_secret_raw(namespace, name)
    except NotFoundError:
        return None
    return {k: base64.b64decode(v) for k, v in data.items()}


def write_tls_secret(
    namespace: str, name: str, data: Mapping[str, bytes], replace: bool = False
) -> None:
    """Create (or replace) a kubernetes.io/tls Secret; ConflictError if another replica won."""
    body = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {constants.LABEL_NAME: "lockstep", constants.LABEL_PART_OF: "lockstep"},
        },
        "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
    }
    try:
        if replace:
            _core().replace_namespaced_secret(name, namespace, body)  # type: ignore[arg-type]
        else:
            _core().create_namespaced_secret(namespace, body)  # type: ignore[arg-type]
    except ApiException as error:
        raise _translate(error, f"Secret {namespace}/{name}") from None


@functools.cache
def _admission() -> client.AdmissionregistrationV1Api:
    return client.AdmissionregistrationV1Api()


def apply_mutating_webhook(body: Mapping[str, Any]) -> None:
    """Create or replace a MutatingWebhookConfiguration (development mode: URL webhooks)."""
    name = body["metadata"]["name"]
    try:
        current = _admission().read_mutating_webhook_configuration(name)
    except ApiException as error:
        if error.status != 404:
            raise _translate(error, f"MutatingWebhookConfiguration {name}") from None
        _admission().create_mutating_webhook_configuration(dict(body))  # type: ignore[arg-type]
        return
    replacement = {**body, "metadata": {**body["metadata"]}}
    replacement["metadata"]["resourceVersion"] = current.metadata.resource_version  # type: ignore[union-attr]
    try:
        _admission().replace_mutating_webhook_configuration(name, replacement)  # type: ignore[arg-type]
    except ApiException as error:
        raise _translate(error, f"MutatingWebhookConfiguration {name}") from None


def inject_webhook_ca(name: str, ca_bundle: bytes) -> bool:
    """Put the CA into every webhook of a configuration (made by the chart); False if absent."""
    try:
        current = _admission().read_mutating_webhook_configuration(name)
    except ApiException as error:
        if error.status == 404:
            return False
        raise _translate(error, f"MutatingWebhookConfiguration {name}") from None
    encoded = base64.b64encode(ca_bundle).decode()
    patch = [
        {"op": "replace", "path": f"/webhooks/{index}/clientConfig/caBundle", "value": encoded}
        if webhook.client_config.ca_bundle
        else {"op": "add", "path": f"/webhooks/{index}/clientConfig/caBundle", "value": encoded}
        for index, webhook in enumerate(current.webhooks or [])
        if webhook.client_config.ca_bundle != encoded  # unchanged: no write
    ]
    if patch:
        _admission().patch_mutating_webhook_configuration(name, patch)
    return True


def remove_scheduling_gate(
    namespace: str, pod: str, remaining: list[dict[str, Any]], resource_version: str
) -> bool:
    """Replace the pod's scheduling gates with `remaining`; False if the pod changed or is gone."""
    patch: list[dict[str, Any]] = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": resource_version},
        {"op": "replace", "path": "/spec/schedulingGates", "value": remaining},
    ]
    try:
        _core().patch_namespaced_pod(pod, namespace, patch)
    except ApiException as error:
        if error.status in (404, 409, 422):
            return False
        raise _translate(error, f"Pod {namespace}/{pod}") from None
    return True


@functools.cache
def _apps() -> client.AppsV1Api:
    return client.AppsV1Api()


def read_workload(namespace: str, kind: str, name: str) -> dict[str, Any] | None:
    """A Deployment or StatefulSet as plain JSON; None when it does not exist."""
    read = {
        "Deployment": _apps().read_namespaced_deployment,
        "StatefulSet": _apps().read_namespaced_stateful_set,
    }[kind]
    try:
        response = read(name, namespace, _preload_content=False)
    except ApiException as error:
        if error.status == 404:
            return None
        raise _translate(error, f"{kind} {namespace}/{name}") from None
    result: dict[str, Any] = json.loads(cast(Any, response).data)
    return result
