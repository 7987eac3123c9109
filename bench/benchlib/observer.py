"""`Observer`: watch streams that note when each object reached each state (same clock, same
client, for the operator and for the floor)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from benchlib.common import (
    GATE,
    GROUP,
    MANAGED_BY_LABEL,
    MIGRATION_LABEL,
    PLURAL,
    VERSION,
    WAIT_FOR_LABEL,
    log,
)
from testbed.kubeapi import KubeAPI


def condition(body: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for item in (body.get("status") or {}).get("conditions") or []:
        if item.get("type") == kind:
            return dict(item)
    return None


def is_ready(body: Mapping[str, Any]) -> bool:
    found = condition(body, "Ready")
    status = body.get("status") or {}
    generation = (body.get("metadata") or {}).get("generation")
    return bool(
        found and found.get("status") == "True" and status.get("observedGeneration") == generation
    )


def job_complete(body: Mapping[str, Any]) -> bool:
    found = condition(body, "Complete")
    return bool(found and found.get("status") == "True")


def has_gate(pod: Mapping[str, Any]) -> bool:
    gates = (pod.get("spec") or {}).get("schedulingGates") or []
    return any(g.get("name") == GATE for g in gates)


Key = tuple[str, str]


@dataclass
class Marks:
    """When the observer first saw each object in each state (time.monotonic())."""

    migration_added: dict[Key, float] = field(default_factory=dict)
    migration_ready: dict[Key, float] = field(default_factory=dict)
    job_added: dict[Key, float] = field(default_factory=dict)  # keyed by the migration
    job_complete: dict[Key, float] = field(default_factory=dict)  # keyed by the migration
    pod_gated: dict[Key, float] = field(default_factory=dict)  # app pods, keyed by the pod
    pod_released: dict[Key, float] = field(default_factory=dict)


class Observer:
    """Watches DatabaseMigrations, Lockstep's Jobs and gated app pods; notes first sightings.

    Raw watch streams (no model classes), one thread each, as the admin: the same path and the
    same clock for the operator's objects and the floor client's.
    """

    def __init__(self, api: KubeAPI) -> None:
        self.api = api
        self.marks = Marks()
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []
        self.changed = threading.Condition()
        self.events: dict[tuple[str, str], int] = {}
        self.responses: list[Any] = []

    def start(self) -> None:
        streams: list[tuple[str, dict[str, str], Callable[[str, dict[str, Any], float], None]]] = [
            (f"/apis/{GROUP}/{VERSION}/{PLURAL}", {}, self._migration),
            ("/apis/batch/v1/jobs", {"labelSelector": MANAGED_BY_LABEL}, self._job),
            ("/api/v1/pods", {"labelSelector": WAIT_FOR_LABEL}, self._pod),
            ("/api/v1/pods", {"labelSelector": MANAGED_BY_LABEL}, self._job_pod),
        ]
        ready = []
        for path, query, handler in streams:
            started = threading.Event()
            thread = threading.Thread(
                target=self._run, args=(path, query, handler, started), daemon=True
            )
            thread.start()
            self.threads.append(thread)
            ready.append(started)
        for started in ready:
            started.wait(30)

    def close(self) -> None:
        """Stop watching and close the streams (an open watch delays the API server's exit)."""
        self.stop.set()
        for response in list(self.responses):
            with contextlib.suppress(Exception):
                response.shutdown()
            with contextlib.suppress(Exception):
                response.release_conn()

    def opened(self, response: Any) -> None:
        self.responses.append(response)
        if self.stop.is_set():  # closed while it opened: cut it off as close() does
            response.shutdown()

    def _run(
        self,
        path: str,
        query: Mapping[str, str],
        handler: Callable[[str, dict[str, Any], float], None],
        started: threading.Event,
    ) -> None:
        version = ""
        while not self.stop.is_set():
            try:
                if not version:
                    listing = self.api.get(path, **query)
                    for item in listing.get("items") or []:
                        handler("LISTED", item, time.monotonic())
                    version = listing["metadata"]["resourceVersion"]
                started.set()
                if self.stop.is_set():
                    return
                events = self.api.watch(path, version, 300, query=dict(query), opened=self.opened)
                for event in events:
                    seen = time.monotonic()
                    kind, obj = event.get("type"), event.get("object") or {}
                    if kind == "ERROR":
                        version = ""  # 410 Gone: list again
                        break
                    version = obj.get("metadata", {}).get("resourceVersion") or version
                    if kind in ("ADDED", "MODIFIED", "DELETED"):
                        handler(str(kind), obj, seen)
                    if self.stop.is_set():
                        return
            except Exception as error:  # noqa: BLE001 - keep watching, whatever happened
                if not self.stop.is_set():
                    log(f"observer: {path}: {type(error).__name__}: {error}; watching again")
                    time.sleep(0.5)

    def count(self, namespace: str, resource: str) -> None:
        key = (namespace, resource)
        self.events[key] = self.events.get(key, 0) + 1

    def events_in(self, namespace: str) -> dict[str, int]:
        """Watch events seen in a namespace, by resource (what a controller there receives)."""
        return {r: n for (ns, r), n in sorted(self.events.items()) if ns == namespace}

    def _job_pod(self, kind: str, body: dict[str, Any], at: float) -> None:
        if kind != "LISTED":
            self.count(body["metadata"]["namespace"], "pods")

    def _note(self, table: dict[Key, float], key: Key, at: float) -> None:
        if key not in table:
            table[key] = at
            with self.changed:
                self.changed.notify_all()

    def _migration(self, kind: str, body: dict[str, Any], at: float) -> None:
        metadata = body["metadata"]
        key = (metadata["namespace"], metadata["name"])
        if kind != "LISTED":
            self.count(key[0], "databasemigrations")
        if kind == "DELETED":
            return
        self._note(self.marks.migration_added, key, at)
        if is_ready(body):
            self._note(self.marks.migration_ready, key, at)

    def _job(self, kind: str, body: dict[str, Any], at: float) -> None:
        metadata = body["metadata"]
        migration = (metadata.get("labels") or {}).get(MIGRATION_LABEL)
        if kind != "LISTED":
            self.count(metadata["namespace"], "jobs")
        if kind == "DELETED" or not migration:
            return
        key = (metadata["namespace"], migration)
        self._note(self.marks.job_added, key, at)
        if job_complete(body):
            self._note(self.marks.job_complete, key, at)

    def _pod(self, kind: str, body: dict[str, Any], at: float) -> None:
        metadata = body["metadata"]
        key = (metadata["namespace"], metadata["name"])
        if kind == "DELETED":
            return
        if has_gate(body):
            self._note(self.marks.pod_gated, key, at)
        elif key in self.marks.pod_gated:
            self._note(self.marks.pod_released, key, at)

    def wait(self, what: str, done: Callable[[Marks], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self.changed:
            while not done(self.marks):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
                self.changed.wait(min(left, 1.0))
