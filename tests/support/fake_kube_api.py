"""`controller.cluster.KubeApi` against dicts, for unit tests that pass it to a Reconciler.

One fake for every unit test of the reconcile loop: what it reads is recorded in `reads`, Jobs it
was asked to create or delete in `created`/`deleted`, status writes in `patches`.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from lockstep import kube

Ref = tuple[str, str]  # (namespace, name)


class FakeKubeApi:
    def __init__(
        self,
        secrets: Mapping[Ref, Mapping[str, str]] | None = None,
        config_maps: Mapping[Ref, Mapping[str, str]] | None = None,
        log_tail: str = "",
    ) -> None:
        self.secrets = {ref: dict(data) for ref, data in (secrets or {}).items()}
        self.config_maps = {ref: dict(data) for ref, data in (config_maps or {}).items()}
        self.log_tail = log_tail
        self.jobs: dict[str, dict[str, Any]] = {}
        self.created: list[str] = []
        self.deleted: list[str] = []
        self.patches: list[dict[str, Any]] = []
        self.reads: list[str] = []
        self.labelled: list[tuple[str, dict[str, str]]] = []

    def read_secret_value(self, namespace: str, name: str, key: str) -> str:
        self.reads.append(f"Secret {name}")
        try:
            return self.secrets[(namespace, name)][key]
        except KeyError:
            raise kube.NotFoundError(f"Secret {namespace}/{name}") from None

    def read_secret_raw(self, namespace: str, name: str) -> dict[str, str]:
        """The whole Secret, base64 as the API serves it."""
        self.reads.append(f"Secret {name}")
        try:
            data = self.secrets[(namespace, name)]
        except KeyError:
            raise kube.NotFoundError(f"Secret {namespace}/{name}") from None
        return {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}

    def read_config_map_data(self, namespace: str, name: str) -> dict[str, str]:
        self.reads.append(f"ConfigMap {name}")
        try:
            return self.config_maps[(namespace, name)]
        except KeyError:
            raise kube.NotFoundError(f"ConfigMap {namespace}/{name}") from None

    def read_workload(self, namespace: str, kind: str, name: str) -> dict[str, Any] | None:
        return None

    def job_pod(self, namespace: str, job: str) -> dict[str, Any] | None:
        return None

    def read_log_tail(self, namespace: str, pod: str, container: str, limit_bytes: int) -> str:
        return self.log_tail

    def create_job(self, namespace: str, body: Mapping[str, Any]) -> None:
        name = body["metadata"]["name"]
        if name in self.jobs:
            raise kube.ConflictError(name)
        self.jobs[name] = dict(body)
        self.created.append(name)

    def delete_job(self, namespace: str, name: str) -> None:
        self.jobs.pop(name, None)
        self.deleted.append(name)

    def label_job(self, namespace: str, name: str, labels: Mapping[str, str]) -> None:
        self.labelled.append((name, dict(labels)))
        if name in self.jobs:
            metadata = self.jobs[name]["metadata"]
            metadata["labels"] = {**metadata.get("labels", {}), **labels}

    def patch_migration_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        self.patches.append(dict(status))

    def remove_scheduling_gate(
        self, namespace: str, pod: str, remaining: list[dict[str, Any]], resource_version: str
    ) -> bool:
        return True
