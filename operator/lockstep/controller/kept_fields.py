"""What the cache keeps of each object: only the fields Lockstep reads, as plain dicts.

A watched body is mostly what Lockstep never reads: half of a pod is `managedFields`, and a Job's
pod template (containers, env, volumes) is only written, never read back. Kept whole, 10,000
migrations with their history cost hundreds of MiB. Each function here names what is kept and
who reads it; a reader of a field not kept here gets None, so a new read needs a line here
(tests/unit/test_cache.py checks that the readers still find what they need in a slim copy).
"""

from __future__ import annotations

import json
import sys
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lockstep.controller import cluster_facts

# Metadata every kind keeps: the key (namespace, name), the uid and kind that Events name
# (kopf.event), labels (indices, scope, phase/attempt/spec hash of Jobs), annotations (retry and
# approval tokens, the gate's container), resourceVersion (the gate's optimistic patch), and
# creationTimestamp (the newest pod of a Job). Never managedFields or ownerReferences.
_METADATA = (
    "name",
    "namespace",
    "uid",
    "generation",
    "labels",
    "annotations",
    "resourceVersion",
    "creationTimestamp",
    "deletionTimestamp",
)
# A container status: the lock sidecar waiting (running, not started), exit codes (lock timeout,
# a failed rehearsal step or claim) and the termination message (the runner's JSON report).
_CONTAINER_STATUS = ("name", "state", "lastState", "started")
# Strings up to this length are shared between cached objects (see `_copy`).
_LONGEST_SHARED = 80


def migration(body: Mapping[str, Any]) -> dict[str, Any]:
    """A DatabaseMigration: spec and status are what planning reads; metadata without
    managedFields."""
    kept = {k: _copy(body[k]) for k in ("apiVersion", "kind", "spec", "status") if k in body}
    return {**kept, "metadata": _metadata(body)}


def packed(slim: Mapping[str, Any]) -> bytes:
    """A slim DatabaseMigration as the cache keeps it: compact JSON, compressed.

    A migration with its run history is about 5 KB as dicts (its history alone 1.9 KB) and 0.6
    KB packed; a pass unpacks it once or twice (tens of microseconds against the milliseconds
    of a pass). Strict JSON: a status Lockstep writes is JSON already (it went to the API).
    """
    return zlib.compress(json.dumps(slim, separators=(",", ":")).encode(), 1)


def unpacked(packed_body: bytes) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(zlib.decompress(packed_body))
    return body


def job(body: Mapping[str, Any]) -> dict[str, Any]:
    """A Job of Lockstep's: labels and status only (cluster_facts.job_view reads nothing else).

    The spec is Lockstep's own build (job_spec.build_job), never read back.
    """
    status = body.get("status") or {}
    return {
        **_type(body),
        "metadata": _metadata(body),
        "status": {
            k: _copy(status[k])
            for k in ("conditions", "startTime", "completionTime")
            if k in status
        },
    }


@dataclass(frozen=True, slots=True)
class FinishedJob:
    """A finished Job as the cache keeps it: a finished Job never changes again, and a release
    history is mostly finished Jobs (50,000 at 10,000 migrations with 5 releases each, ADR 0015
    point 10). A slim dict costs about 1.6 KB, this about 0.6 KB; `body` gives the slim dict's
    fields back (what `cluster_facts.job_view`, the indices and `Cache.job_deleted` read)."""

    namespace: str
    name: str
    uid: str
    labels: tuple[str, ...]  # key, value, key, value, ...
    condition: tuple[str, str, str]  # the terminal condition: type, reason, message
    start_time: str | None
    completion_time: str | None
    transition_time: str | None  # the condition's, kept only without a completionTime

    def body(self) -> dict[str, Any]:
        condition = {
            "type": self.condition[0],
            "status": "True",
            "reason": self.condition[1],
            "message": self.condition[2],
        }
        if self.transition_time is not None:
            condition["lastTransitionTime"] = self.transition_time
        status: dict[str, Any] = {"conditions": [condition]}
        if self.start_time is not None:
            status["startTime"] = self.start_time
        if self.completion_time is not None:
            status["completionTime"] = self.completion_time
        labels = dict(zip(self.labels[::2], self.labels[1::2], strict=True))
        metadata = {"name": self.name, "namespace": self.namespace, "uid": self.uid}
        return {**_JOB_TYPE, "metadata": {**metadata, "labels": labels}, "status": status}


_JOB_TYPE = {"apiVersion": "batch/v1", "kind": "Job"}


def finished_job(body: Mapping[str, Any]) -> FinishedJob | None:
    """The record of a Job that has finished (Complete or Failed); None while it runs."""
    status = body.get("status") or {}
    terminal = cluster_facts.terminal_condition(status)
    if terminal is None:
        return None
    metadata = body.get("metadata") or {}
    labels = metadata.get("labels") or {}
    completion = _shared(status.get("completionTime"))
    return FinishedJob(
        namespace=_shared(str(metadata.get("namespace", ""))),
        name=_shared(str(metadata.get("name", ""))),
        uid=str(metadata.get("uid", "")),
        labels=tuple(_shared(str(part)) for item in labels.items() for part in item),
        condition=(
            _shared(str(terminal["type"])),
            _shared(str(terminal.get("reason") or "")),
            _shared(str(terminal.get("message") or "")),
        ),
        start_time=_shared(status.get("startTime")),
        completion_time=completion,
        transition_time=None if completion else _shared(terminal.get("lastTransitionTime")),
    )


def job_pod(body: Mapping[str, Any]) -> dict[str, Any]:
    """A migration pod: its container statuses (lock wait, outcome, report) and, of its spec,
    the init containers' names and commands (a failed rehearsal step is described by them)."""
    spec, status = body.get("spec") or {}, body.get("status") or {}
    return {
        **_type(body),
        "metadata": _metadata(body),
        "spec": {
            "initContainers": [
                {"name": _shared(c.get("name")), "command": _copy(list(c.get("command") or []))}
                for c in spec.get("initContainers") or []
            ]
        },
        "status": {
            "phase": _shared(status.get("phase")),
            "initContainerStatuses": _statuses(status.get("initContainerStatuses")),
            "containerStatuses": _statuses(status.get("containerStatuses")),
        },
    }


def app_pod(body: Mapping[str, Any]) -> dict[str, Any]:
    """An application pod waiting for a migration: its scheduling gates and its containers'
    images (gate.decide, gate.gates_without_ours); no status."""
    spec = body.get("spec") or {}
    return {
        **_type(body),
        "metadata": _metadata(body),
        "spec": {
            "schedulingGates": _copy(spec.get("schedulingGates") or []),
            "containers": [
                {"name": _shared(c.get("name")), "image": _shared(c.get("image"))}
                for c in spec.get("containers") or []
            ],
        },
    }


def _type(body: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _shared(body[k]) for k in ("apiVersion", "kind") if k in body}


def _metadata(body: Mapping[str, Any]) -> dict[str, Any]:
    metadata = body.get("metadata") or {}
    return {k: _copy(metadata[k]) for k in _METADATA if k in metadata}


def _statuses(statuses: Any) -> list[dict[str, Any]]:
    return [{k: _copy(s[k]) for k in _CONTAINER_STATUS if k in s} for s in statuses or []]


def shared_copy(value: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy as the cache keeps it (see `_copy`): a status Lockstep wrote, or a cached
    body copied anew (Cache.compacting)."""
    copied: dict[str, Any] = _copy(value)
    return copied


def _copy(value: Any) -> Any:
    """A deep, plain-dict copy (Kopf bodies are live views) whose strings are shared.

    Each watch event's body is decoded on its own, so every cached object would hold its own
    copy of every key ("metadata", "lastTransitionTime", label keys) and of every repeated value
    ("True", "Succeeded", label values): interned, the cache holds each once (bench/
    cache_footprint.py). Long strings (messages, reports) are left as they are.
    """
    if isinstance(value, Mapping):
        return {_shared(k): _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return _shared(value)


def _shared(value: Any) -> Any:
    if type(value) is str and len(value) <= _LONGEST_SHARED:
        return sys.intern(value)
    return value
