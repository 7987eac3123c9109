"""Every version of the DatabaseMigrations in a namespace, as a watch saw them, and scenarios
that drive real DatabaseMigrations through each stage a GitOps tool must judge.

Used by the kstatus e2e test (the verdict of the real kstatus library at each stage) and the
Argo CD health e2e test (which also records the status snapshots under
charts/lockstep/files/argocd/.../testdata).
"""

from __future__ import annotations

import copy
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from kubernetes import client, watch

from testbed import kubetest

# How the scenario's objects are named in committed snapshots.
SNAPSHOT_NAMESPACE = "shop"


class Recorder:
    """Collects every ADDED/MODIFIED version of DatabaseMigrations in `namespace`, in order."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.api = api
        self.namespace = namespace
        self._versions: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._watch = watch.Watch()
        self._ready = threading.Event()
        self._stopping = threading.Event()
        self._error: Exception | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Recorder:
        self._thread.start()
        if not self._ready.wait(10):
            raise AssertionError("the DatabaseMigration watch did not start")
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._stopping.set()
        self._watch.stop()  # takes effect at the next event; the thread is a daemon
        if self._error is not None and error is None:
            raise AssertionError(f"the watch failed: {self._error!r}") from self._error

    def _run(self) -> None:
        custom = client.CustomObjectsApi(self.api)
        args = (kubetest.GROUP, kubetest.VERSION, self.namespace, kubetest.PLURAL)
        try:
            listed: dict[str, Any] = custom.list_namespaced_custom_object(*args)
            self._ready.set()
            for event in self._watch.stream(
                custom.list_namespaced_custom_object,
                *args,
                resource_version=listed["metadata"]["resourceVersion"],
                timeout_seconds=600,
            ):
                if event["type"] in ("ADDED", "MODIFIED"):
                    with self._lock:
                        self._versions.append(copy.deepcopy(event["object"]))
        except Exception as error:  # noqa: BLE001 - reported by __exit__ unless stopping
            if not self._stopping.is_set():
                self._error = error

    def versions(self, name: str) -> list[dict[str, Any]]:
        with self._lock:
            return [v for v in self._versions if v["metadata"]["name"] == name]


def ready_reason(body: Mapping[str, Any]) -> str | None:
    found = kubetest.condition(body, "Ready")
    return None if found is None else f"{found.get('status')}/{found.get('reason')}"


def observed(body: Mapping[str, Any]) -> bool:
    """Whether the operator has written a status for this generation."""
    status: Mapping[str, Any] = body.get("status") or {}
    return bool(status.get("observedGeneration") == body["metadata"].get("generation"))


@dataclass
class Stage:
    """One moment of a real DatabaseMigration, and the object as the API served it then."""

    name: str
    body: dict[str, Any]
    note: str = ""


@dataclass
class Stages:
    items: dict[str, Stage] = field(default_factory=dict)

    def add(self, name: str, body: Mapping[str, Any], note: str = "") -> None:
        self.items[name] = Stage(name, copy.deepcopy(dict(body)), note)


def sanitize(body: Mapping[str, Any], namespace: str) -> dict[str, Any]:
    """An object as a fixture: no server bookkeeping, the namespace and database names fixed."""
    clean = copy.deepcopy(dict(body))
    metadata = clean["metadata"]
    for key in ("managedFields", "uid", "resourceVersion", "selfLink"):
        metadata.pop(key, None)
    metadata["creationTimestamp"] = "2026-01-01T00:00:00Z"
    annotations = metadata.get("annotations") or {}
    for key in [k for k in annotations if k.startswith("kopf.zalando.org/")]:
        annotations.pop(key)
    if not annotations:
        metadata.pop("annotations", None)

    # Messages and log tails name the test's database and port: make them stable.
    def scrub(value: Any) -> Any:
        if isinstance(value, str):
            value = value.replace(namespace, SNAPSHOT_NAMESPACE)
            value = re.sub(r"lockstep_test_[0-9a-f]{12}", "shop", value)
            return re.sub(r"127\.0\.0\.1:\d+", "db.shop.svc:5432", value)
        if isinstance(value, dict):
            return {k: scrub(v) for k, v in value.items()}
        if isinstance(value, list):
            return [scrub(v) for v in value]
        return value

    scrubbed: dict[str, Any] = scrub(clean)
    return scrubbed
