"""Small helpers for e2e tests: apply objects, wait for conditions, read DatabaseMigrations."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from kubernetes import client, utils
from kubernetes.client.exceptions import ApiException

from lockstep import spec_history
from lockstep.tools import version_table

GROUP, VERSION, PLURAL = "lockstep.dev", "v1alpha1", "databasemigrations"
REPO = Path(__file__).resolve().parents[2]
CRD_FILE = REPO / "crds" / "databasemigrations.yaml"
QUICKSTART = REPO / "examples" / "quickstart" / "migration.yaml"

T = TypeVar("T")


def wait_for(
    what: str, probe: Callable[[], T | None], timeout: float = 60.0, interval: float = 0.2
) -> T:
    """Poll `probe` until it returns something truthy; fail with `what` and the last value."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last seen: {last!r}")


def apply_crds(api: client.ApiClient) -> None:
    """Create or replace the CRD from crds/, then wait until it is Established."""
    extensions = client.ApiextensionsV1Api(api)
    crd = yaml.safe_load(CRD_FILE.read_text())
    name = crd["metadata"]["name"]
    try:
        current = extensions.read_custom_resource_definition(name)
        crd["metadata"]["resourceVersion"] = current.metadata.resource_version
        extensions.replace_custom_resource_definition(name, crd)
    except ApiException as error:
        if error.status != 404:
            raise
        extensions.create_custom_resource_definition(crd)

    def established() -> bool:
        conditions = extensions.read_custom_resource_definition(name).status.conditions or []
        return any(c.type == "Established" and c.status == "True" for c in conditions)

    wait_for(f"CRD {name} Established", established, timeout=30)
    # Established is read from storage; the API server's own CRD handler learns of it through an
    # informer a moment later and answers 404 "page not found" until then. Wait until it serves.
    group, plural = crd["spec"]["group"], crd["spec"]["names"]["plural"]
    versions = [v["name"] for v in crd["spec"]["versions"] if v.get("served", True)]

    def served() -> bool:
        objects = client.CustomObjectsApi(api)
        try:
            for version in versions:
                objects.list_cluster_custom_object(group, version, plural, limit=1)
        except ApiException as error:
            if error.status == 404:
                return False
            raise
        return True

    wait_for(f"CRD {name} served", served, timeout=30)


def create_secret(
    api: client.ApiClient, namespace: str, name: str, data: Mapping[str, str]
) -> None:
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    client.CoreV1Api(api).create_namespaced_secret(
        namespace, {"metadata": {"name": name}, "data": encoded}
    )


def create_config_map(
    api: client.ApiClient, namespace: str, name: str, data: Mapping[str, str]
) -> None:
    client.CoreV1Api(api).create_namespaced_config_map(
        namespace, {"metadata": {"name": name}, "data": dict(data)}
    )


def replace_config_map(
    api: client.ApiClient, namespace: str, name: str, data: Mapping[str, str]
) -> None:
    client.CoreV1Api(api).patch_namespaced_config_map(name, namespace, {"data": dict(data)})


def create_objects(
    api: client.ApiClient, namespace: str, documents: Iterable[dict[str, Any]]
) -> None:
    """Create built-in kinds with the client's utils and DatabaseMigrations as custom objects."""
    for document in documents:
        if document.get("kind") == "DatabaseMigration":
            create_migration(api, namespace, document)
        else:
            utils.create_from_dict(api, document, namespace=namespace)


def create_migration(
    api: client.ApiClient, namespace: str, body: Mapping[str, Any]
) -> dict[str, Any]:
    body = dict(body)
    body.setdefault("apiVersion", f"{GROUP}/{VERSION}")
    body.setdefault("kind", "DatabaseMigration")
    body["metadata"] = {**body.get("metadata", {}), "namespace": namespace}
    created: dict[str, Any] = client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, body
    )
    return created


def get_custom_object_or_empty(
    api: client.ApiClient, group: str, version: str, namespace: str, plural: str, name: str
) -> dict[str, Any]:
    """A custom object, or {} while it does not exist (Flux's and Argo CD's objects in tests)."""
    try:
        result: dict[str, Any] = client.CustomObjectsApi(api).get_namespaced_custom_object(
            group, version, namespace, plural, name
        )
    except ApiException as error:
        if error.status == 404:
            return {}
        raise
    return result


def get_migration(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    result: dict[str, Any] = client.CustomObjectsApi(api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name
    )
    return result


def patch_migration(
    api: client.ApiClient, namespace: str, name: str, patch: Mapping[str, Any]
) -> dict[str, Any]:
    result: dict[str, Any] = client.CustomObjectsApi(api).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name, dict(patch)
    )
    return result


def delete_migration(api: client.ApiClient, namespace: str, name: str) -> None:
    client.CustomObjectsApi(api).delete_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name
    )


def condition(body: Mapping[str, Any], kind: str) -> dict[str, Any] | None:
    for item in (body.get("status") or {}).get("conditions") or []:
        if item.get("type") == kind:
            return dict(item)
    return None


# How long a Stalled resource may stay so before a wait for something else gives up on it.
STALLED_GRACE_SECONDS = 10.0


def wait_for_condition(
    api: client.ApiClient,
    namespace: str,
    name: str,
    kind: str,
    status: str = "True",
    reason: str | None = None,
    timeout: float = 90.0,
) -> dict[str, Any]:
    """Wait until condition `kind` has `status` (and `reason`); return the whole resource.

    A resource that is Stalled for the current generation will not get there by waiting: the
    wait ends then with Lockstep's own message instead of at the timeout. The short grace
    period lets the operator react to a retry request or a fix made just before the wait.
    """
    stalled_since: float | None = None
    waits_for_failure = kind == "Stalled" or (kind == "Ready" and status == "False")

    def probe() -> dict[str, Any] | None:
        nonlocal stalled_since
        body = get_migration(api, namespace, name)
        stalled = condition(body, "Stalled")
        current = (body.get("status") or {}).get("observedGeneration") == body["metadata"].get(
            "generation"
        )
        if waits_for_failure or not (stalled and stalled.get("status") == "True" and current):
            stalled_since = None
        elif stalled_since is None:
            stalled_since = time.monotonic()
        elif time.monotonic() - stalled_since > STALLED_GRACE_SECONDS:
            raise AssertionError(
                f"{namespace}/{name} is Stalled ({stalled.get('reason')}), so it will not reach "
                f"{kind}={status}: {stalled.get('message')}"
            )
        found = condition(body, kind)
        if found is None or found.get("status") != status:
            return None
        if reason is not None and found.get("reason") != reason:
            return None
        return body

    wanted = f"{kind}={status}" + (f" ({reason})" if reason else "")
    return wait_for(f"{namespace}/{name} {wanted}", probe, timeout=timeout, interval=0.3)


def wait_ready(
    api: client.ApiClient, namespace: str, name: str, timeout: float = 300.0
) -> dict[str, Any]:
    """Ready=True (Succeeded), or fail at once with the operator's reason when it stalls."""

    def probe() -> dict[str, Any] | None:
        body = get_migration(api, namespace, name)
        stalled = condition(body, "Stalled")
        if stalled is not None and stalled.get("status") == "True":
            last = (body.get("status") or {}).get("lastRun") or {}
            raise AssertionError(
                f"{name} stalled ({stalled.get('reason')}): {stalled.get('message')}\n"
                f"log tail:\n{last.get('logTail', '')}"
            )
        ready = condition(body, "Ready")
        if ready and ready.get("status") == "True" and ready.get("reason") == "Succeeded":
            return body
        return None

    return wait_for(f"{namespace}/{name} Ready", probe, timeout=timeout, interval=0.5)


def jobs_of(api: client.ApiClient, namespace: str, migration: str) -> list[client.V1Job]:
    return list(
        client.BatchV1Api(api)
        .list_namespaced_job(namespace, label_selector=f"lockstep.dev/migration={migration}")
        .items
    )


def events_for(api: client.ApiClient, namespace: str, name: str) -> list[client.CoreV1Event]:
    events = client.CoreV1Api(api).list_namespaced_event(
        namespace, field_selector=f"involvedObject.name={name}"
    )
    return list(events.items)


def event_reasons(api: client.ApiClient, namespace: str, name: str) -> list[str]:
    return [e.reason for e in events_for(api, namespace, name)]


def wait_for_events(
    api: client.ApiClient, namespace: str, name: str, reasons: set[str], timeout: float = 30.0
) -> list[str]:
    """Wait until the DatabaseMigration has Events of all `reasons`; their reasons, in order.

    The operator writes the status first and posts the Event after it (ADR 17), so a test that
    has just seen a condition may read the Events before the matching one exists."""
    return wait_for(
        f"events {sorted(reasons)} on {namespace}/{name}",
        lambda: (found := event_reasons(api, namespace, name)) and reasons <= set(found) and found,
        timeout=timeout,
    )


def sql_migration(
    name: str, config_map: str | None = None, url_from: str = "db", **spec: Any
) -> dict[str, Any]:
    """A tool-sql DatabaseMigration on PostgreSQL; the ConfigMap defaults to its own name."""
    return {
        "metadata": {"name": name},
        "spec": {
            "tool": "sql",
            "source": {"configMapRef": {"name": config_map or name}},
            "database": {
                "engine": "postgresql",
                "urlSecretRef": {"name": url_from, "key": "url"},
            },
            **spec,
        },
    }


def quickstart_documents(database_url: str) -> list[dict[str, Any]]:
    """The quickstart example (ConfigMap, Secret, migration `shop`) on the test's database."""
    documents = [d for d in yaml.safe_load_all(QUICKSTART.read_text()) if d]
    for document in documents:
        document.get("metadata", {}).pop("namespace", None)
        if document["kind"] == "Secret":
            document.pop("data", None)
            document["stringData"] = {"url": database_url}
    return documents


# DatabaseMigrations with this label belong to an operator a test starts itself (in a container,
# say): the e2e session operator selects everything else (--selector), so it leaves them alone.
OWN_OPERATOR_LABEL = "testbed.lockstep.dev/own-operator"


def history_table(namespace: str, config_map: str) -> str:
    """Tool sql's history table of the migrations in ``config_map`` (one per migration set)."""
    source = {"source": {"configMapRef": {"name": config_map}}}
    owner = spec_history.history_owner(namespace, "", source)
    return version_table.sql_history_name(owner)
