"""Kopf handlers: the only module with `@kopf.*` decorators. Each is a line or two.

Watches keep the cache fresh and trigger the reconciler; all decisions live in `planning`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, cast

import kopf

from lockstep import constants, gate, kube, planning
from lockstep.controller.cache import Cache, key_of
from lockstep.controller.reconcile import Reconciler

cache = Cache()


def _emit(body: Mapping[str, Any], event: planning.Event) -> None:
    kopf.event(
        kopf.Body(cast(kopf.RawBody, dict(body))),
        type=event.type,
        reason=event.reason,
        message=event.message,
    )


reconciler = Reconciler(cache=cache, emit=_emit)

MANAGED_JOBS = {constants.LABEL_MANAGED_BY: constants.MANAGED_BY}


class _NoDiffBase(kopf.DiffBaseStorage):
    """Lockstep has event handlers only: Kopf's deep copy of every body, kept to diff it for
    change handlers, is pure cost (about 6-13 % of the operator's CPU in bench/)."""

    def build(self, *, body: Any, extra_fields: Any = None) -> Any:
        return {}

    def fetch(self, *, body: Any) -> Any:
        return None

    def store(self, *, body: Any, patch: Any, essence: Any) -> None:
        return None


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.posting.loggers = False  # Events come from the planner, not from log lines
    settings.persistence.diffbase_storage = _NoDiffBase()
    settings.watching.server_timeout = 300
    settings.networking.error_backoffs = [1, 2, 5, 10]
    logging.getLogger("kubernetes").setLevel(logging.WARNING)
    # Kopf logs every handled event at INFO; Lockstep logs what it decides instead.
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)


@kopf.on.login()
def login(**_: Any) -> kopf.ConnectionInfo:
    """Kopf connects with the same credentials `kube.load_config` loaded (kubeconfig/in-cluster)."""
    found = kube.credentials()
    return kopf.ConnectionInfo(
        server=found.server,
        ca_path=found.ca_path,
        insecure=found.insecure,
        scheme=found.scheme,
        token=found.token,
        certificate_path=found.certificate_path,
        private_key_path=found.private_key_path,
    )


@kopf.on.event(constants.GROUP, constants.VERSION, constants.PLURAL)
async def migration_changed(event: Mapping[str, Any], body: kopf.Body, **_: Any) -> None:
    if event.get("type") == "DELETED":
        reconciler.deleted(key_of(body))
        return
    # The first sight of an object (operator start, or a new resource) gets a full pass.
    key = key_of(body)
    first_sight = cache.migration(key) is None
    cache.put_migration(body)
    reconciler.trigger(key, full=first_sight)


@kopf.on.event("batch", "v1", "jobs", labels=MANAGED_JOBS)
async def job_changed(
    event: Mapping[str, Any], body: kopf.Body, labels: kopf.Labels, **_: Any
) -> None:
    if event.get("type") == "DELETED":
        cache.drop_job(key_of(body))
    else:
        cache.put_job(body)
    reconciler.trigger((str(body["metadata"]["namespace"]), str(labels[constants.LABEL_MIGRATION])))
    reconciler.trigger_database(str(labels.get(constants.LABEL_DATABASE, "")))


@kopf.on.event("", "v1", "pods", labels=MANAGED_JOBS)
async def pod_changed(
    event: Mapping[str, Any], body: kopf.Body, labels: kopf.Labels, **_: Any
) -> None:
    """Pods tell whether a Job's lock sidecar still waits for the database lock."""
    if event.get("type") == "DELETED":
        cache.drop_pod(key_of(body))
    else:
        cache.put_pod(body)
    migration = labels.get(constants.LABEL_MIGRATION)
    if migration:
        reconciler.trigger((str(body["metadata"]["namespace"]), str(migration)))


@kopf.on.event("", "v1", "pods", labels={gate.WAIT_FOR_LABEL: kopf.PRESENT})
async def app_pod_changed(
    event: Mapping[str, Any], body: kopf.Body, labels: kopf.Labels, **_: Any
) -> None:
    """Application pods waiting for a migration: released when it succeeds."""
    key = key_of(body)
    if event.get("type") == "DELETED":
        cache.drop_app_pod(key)
    else:
        cache.put_app_pod(body)
    migration = (key[0], str(labels[gate.WAIT_FOR_LABEL]))
    if cache.migration(migration) is None and gate.has_gate(body):
        reconciler.note_missing_migration(body, migration[1])
        return
    reconciler.trigger(migration)
