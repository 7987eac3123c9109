"""An in-memory view of DatabaseMigrations and Lockstep's Jobs, kept fresh by the watches.

Reconciling from this cache instead of GET-ting objects keeps an idle or busy operator cheap for
the API server: the watch streams are the only reads of these kinds.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from lockstep import conditions, constants
from lockstep.controller import cluster_facts

Key = tuple[str, str]  # (namespace, name)


def key_of(body: Mapping[str, Any]) -> Key:
    metadata = body["metadata"]
    return (str(metadata.get("namespace", "")), str(metadata["name"]))


class Cache:
    def __init__(self) -> None:
        self._migrations: dict[Key, dict[str, Any]] = {}
        self._jobs: dict[Key, dict[str, Any]] = {}
        self._pods: dict[Key, dict[str, Any]] = {}
        self._app_pods: dict[Key, dict[str, Any]] = {}

    # DatabaseMigrations
    def put_migration(self, body: Mapping[str, Any]) -> Key:
        key = key_of(body)
        self._migrations[key] = _plain(body)
        return key

    def drop_migration(self, key: Key) -> None:
        self._migrations.pop(key, None)

    def migration(self, key: Key) -> dict[str, Any] | None:
        return self._migrations.get(key)

    def migration_keys(self) -> list[Key]:
        return list(self._migrations)

    def update_status(self, key: Key, status: Mapping[str, Any]) -> None:
        """Remember a status we wrote, so the next pass plans from it even before the watch echo."""
        body = self._migrations.get(key)
        if body is not None:
            body["status"] = dict(status)

    # Jobs
    def put_job(self, body: Mapping[str, Any]) -> None:
        self._jobs[key_of(body)] = _plain(body)

    def job(self, key: Key) -> dict[str, Any] | None:
        return self._jobs.get(key)

    def drop_job(self, key: Key) -> None:
        self._jobs.pop(key, None)

    def jobs_of(self, migration: Key) -> list[dict[str, Any]]:
        namespace, name = migration
        return [
            job
            for (job_namespace, _), job in self._jobs.items()
            if job_namespace == namespace and _label(job, constants.LABEL_MIGRATION) == name
        ]

    def active_jobs_on_database(self, database_key: str) -> list[dict[str, Any]]:
        return [
            job
            for job in self._jobs.values()
            if _label(job, constants.LABEL_DATABASE) == database_key
            # Plan Jobs only read: they neither hold nor wait for the database's lock.
            and _label(job, constants.LABEL_PHASE) != constants.PHASE_PLAN
            and cluster_facts.job_view(job).state == "Active"
        ]

    def others_on_database(self, database_key: str, migration: Key) -> list[dict[str, Any]]:
        """Active Jobs of other migrations on this database: the runs a new one must wait for."""
        namespace, name = migration
        return [
            job
            for job in self.active_jobs_on_database(database_key)
            if job["metadata"].get("namespace") != namespace
            or _label(job, constants.LABEL_MIGRATION) != name
        ]

    # Pods of migration Jobs (only their lock sidecar's state is read)
    def put_pod(self, body: Mapping[str, Any]) -> None:
        self._pods[key_of(body)] = _plain(body)

    def drop_pod(self, key: Key) -> None:
        self._pods.pop(key, None)

    def pod_of_job(self, namespace: str, job: str) -> dict[str, Any] | None:
        """The newest pod of a Job (a Job of Lockstep's has one pod at a time)."""
        pods = [
            pod
            for (pod_namespace, _), pod in self._pods.items()
            if pod_namespace == namespace and _label(pod, "job-name") == job
        ]
        return max(pods, key=lambda p: str(p["metadata"].get("creationTimestamp")), default=None)

    # Application pods that wait for a migration (label lockstep.dev/wait-for)
    def put_app_pod(self, body: Mapping[str, Any]) -> None:
        self._app_pods[key_of(body)] = _plain(body)

    def drop_app_pod(self, key: Key) -> None:
        self._app_pods.pop(key, None)

    def app_pods_waiting_for(self, migration: Key, label: str) -> list[dict[str, Any]]:
        namespace, name = migration
        return [
            pod
            for (pod_namespace, _), pod in self._app_pods.items()
            if pod_namespace == namespace and _label(pod, label) == name
        ]

    def migrations_on_database(self, database_key: str) -> Iterator[Key]:
        """Migrations that have had a Job on this database: the ones a finished Job may unblock."""
        seen: set[Key] = set()
        for (namespace, _), job in self._jobs.items():
            if _label(job, constants.LABEL_DATABASE) != database_key:
                continue
            key = (namespace, _label(job, constants.LABEL_MIGRATION))
            if key not in seen and key in self._migrations:
                seen.add(key)
                yield key
        for key, body in self._migrations.items():
            waiting = _ready_reason(body) == constants.Reason.WAITING_FOR_JOB
            if waiting and key not in seen:
                yield key


def _plain(body: Mapping[str, Any]) -> dict[str, Any]:
    """A deep, plain-dict copy (Kopf bodies are live views)."""
    return {k: _copy(v) for k, v in body.items()}


def _copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _label(body: Mapping[str, Any], name: str) -> str:
    return str((body.get("metadata", {}).get("labels") or {}).get(name, ""))


def _ready_reason(body: Mapping[str, Any]) -> str:
    return str((conditions.ready(body.get("status") or {}) or {}).get("reason", ""))
