"""The Kubernetes calls the reconciler makes, as a typed Protocol.

The gatherer and the actor receive an object of this shape instead of reaching for
`lockstep.kube` themselves: the real `kube` module satisfies it (and is the default), tests pass
a fake. The calls are synchronous; the reconciler runs them in worker threads.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol


class KubeApi(Protocol):
    def read_secret_value(self, namespace: str, name: str, key: str) -> str: ...

    def read_secret_raw(self, namespace: str, name: str) -> dict[str, str]: ...

    def read_config_map_data(self, namespace: str, name: str) -> dict[str, str]: ...

    def read_workload(self, namespace: str, kind: str, name: str) -> dict[str, Any] | None: ...

    def job_pod(self, namespace: str, job: str) -> dict[str, Any] | None: ...

    def list_page(
        self,
        plural: str,
        namespace: str | None,
        label_selector: str,
        continue_token: str,
        limit: int,
    ) -> tuple[list[dict[str, Any]], str]: ...

    def read_log_tail(self, namespace: str, pod: str, container: str, limit_bytes: int) -> str: ...

    def create_job(self, namespace: str, body: Mapping[str, Any]) -> None: ...

    def delete_job(self, namespace: str, name: str) -> None: ...

    def label_job(self, namespace: str, name: str, labels: Mapping[str, str]) -> None: ...

    def patch_migration_status(
        self, namespace: str, name: str, status: Mapping[str, Any]
    ) -> None: ...

    def remove_scheduling_gate(
        self, namespace: str, pod: str, remaining: list[dict[str, Any]], resource_version: str
    ) -> bool: ...
