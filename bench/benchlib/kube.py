"""The bench's Kubernetes objects: clients, namespaces, identities (a ServiceAccount and a token
kubeconfig per driver, so the API server can tell their requests apart), DatabaseMigrations."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from benchlib.common import DRIVER_LABEL, GROUP, PLURAL, SYSTEM_NAMESPACE, VERSION, log
from testbed.kubeapi import ApiError, KubeAPI

# --------------------------------------------------------------------------- identities


@dataclass
class Identity:
    """A ServiceAccount with cluster-admin, and a kubeconfig that authenticates as it."""

    name: str
    kubeconfig: Path

    @property
    def user(self) -> str:
        return f"system:serviceaccount:{SYSTEM_NAMESPACE}:{self.name}"


def ensure_namespace(api: client.ApiClient, name: str, labels: Mapping[str, str] = {}) -> None:
    body: Any = {"metadata": {"name": name, "labels": dict(labels)}}
    try:
        client.CoreV1Api(api).create_namespace(body)
    except ApiException as error:
        if error.status != 409:
            raise


def make_identity(api: client.ApiClient, admin_kubeconfig: Path, name: str, out: Path) -> Identity:
    """A ServiceAccount bound to cluster-admin, with a token kubeconfig in `out`.

    Not system:masters: those requests skip API Priority and Fairness (the `exempt` FlowSchema),
    and the bench counts requests per FlowSchema.
    """
    core, rbac = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
    ensure_namespace(api, SYSTEM_NAMESPACE)
    account: Any = {"metadata": {"name": name}}
    with contextlib.suppress(ApiException):
        core.create_namespaced_service_account(SYSTEM_NAMESPACE, account)
    binding: Any = {
        "metadata": {"name": name},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "cluster-admin",
        },
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": SYSTEM_NAMESPACE}],
    }
    with contextlib.suppress(ApiException):
        rbac.create_cluster_role_binding(binding)
    request: Any = {"spec": {"expirationSeconds": 48 * 3600}}
    token = core.create_namespaced_service_account_token(name, SYSTEM_NAMESPACE, request).status
    assert token is not None
    admin = json.loads(admin_kubeconfig.read_text())
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": admin["clusters"],
        "users": [{"name": name, "user": {"token": token.token}}],
        "contexts": [
            {"name": name, "context": {"cluster": admin["clusters"][0]["name"], "user": name}}
        ],
        "current-context": name,
    }
    out.write_text(json.dumps(document, indent=2) + "\n")
    out.chmod(0o600)
    # RBAC takes a moment to see a new binding; a client that starts before gets 403s and
    # backs off (Kopf for a minute or more).
    probe = KubeAPI(out, pool=1)
    deadline = time.monotonic() + 30
    while True:
        try:
            probe.get(f"/apis/{GROUP}/{VERSION}/{PLURAL}", limit="1")
            probe.get("/api/v1/pods", limit="1")
            break
        except ApiError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    return Identity(name, out)


# --------------------------------------------------------------------------- objects


def migration_body(
    name: str,
    config_map: str,
    secret: str,
    key: str,
    engine: str,
    driver: str,
    **spec: Any,
) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "DatabaseMigration",
        "metadata": {"name": name, "labels": {DRIVER_LABEL: driver}},
        "spec": {
            "tool": "sql",
            "source": {"configMapRef": {"name": config_map}},
            "target": "head",
            "database": {"engine": engine, "urlSecretRef": {"name": secret, "key": key}},
            **spec,
        },
    }


def create_migration(api: KubeAPI, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """POST the DatabaseMigration as it is (no model classes: the scale stage makes thousands);
    returns the stored object."""
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}"
    return api.post(path, dict(body))


def delete_namespaces(api: client.ApiClient, names: Iterable[str], timeout: float) -> None:
    """Delete namespaces and wait until they are gone (their objects with them)."""
    core = client.CoreV1Api(api)
    names = list(names)
    for name in names:
        with contextlib.suppress(ApiException):
            core.delete_namespace(name)
    if timeout <= 0:
        return
    deadline = time.monotonic() + timeout
    left = set(names)
    while left and time.monotonic() < deadline:
        existing = {str(n.metadata.name) for n in core.list_namespace().items if n.metadata}
        left &= existing
        if left:
            time.sleep(1)
    if left:
        log(f"{len(left)} namespace(s) still terminating after {timeout:.0f}s: going on")


def api_client(kubeconfig: Path, pool: int = 16) -> client.ApiClient:
    """An ApiClient for `kubeconfig` that keeps up to `pool` connections (threads share it)."""
    configuration = client.Configuration()
    config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=str(kubeconfig), client_configuration=configuration
    )
    configuration.connection_pool_maxsize = pool
    return client.ApiClient(configuration)
