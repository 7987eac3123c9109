"""Kopf handlers: the only module with `@kopf.*` decorators. Each is a line or two.

Each handler hands its event to `watches` (cache, then triggers); all decisions live in `planning`.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping
from typing import Any, cast

import kopf

from lockstep import constants, gate, kube
from lockstep.controller import watches
from lockstep.controller.cache import Cache
from lockstep.controller.reconcile import Reconciler
from lockstep.planning.facts import Event

cache = Cache()


def _emit(body: Mapping[str, Any], event: Event) -> None:
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
    # `kubectl describe` shows "From lockstep", and reportingInstance names the replica.
    settings.posting.reporting_component = constants.REPORTING_COMPONENT
    settings.posting.reporting_instance = os.environ.get("HOSTNAME") or socket.gethostname()
    settings.posting.event_name_prefix = "lockstep-event-"
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
    watches.migration_event(reconciler, event.get("type"), body)


@kopf.on.event("batch", "v1", "jobs", labels=MANAGED_JOBS)
async def job_changed(event: Mapping[str, Any], body: kopf.Body, **_: Any) -> None:
    watches.job_event(reconciler, event.get("type"), body)


@kopf.on.event("", "v1", "pods", labels=MANAGED_JOBS)
async def pod_changed(event: Mapping[str, Any], body: kopf.Body, **_: Any) -> None:
    watches.pod_event(reconciler, event.get("type"), body)


@kopf.on.event("", "v1", "pods", labels={gate.WAIT_FOR_LABEL: kopf.PRESENT})
async def app_pod_changed(event: Mapping[str, Any], body: kopf.Body, **_: Any) -> None:
    watches.app_pod_event(reconciler, event.get("type"), body)
