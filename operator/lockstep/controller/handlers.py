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
# Secrets that never hold a database URL, filtered by the API server: Helm's release records (the
# largest Secrets of most clusters) and legacy service-account tokens. A migration that names one
# still works: its reads are GETs (a miss in controller.inputs).
SECRET_FIELD_SELECTOR = "type!=helm.sh/release.v1,type!=kubernetes.io/service-account-token"  # noqa: S105


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
    settings.watching.field_selectors["v1", "secrets"] = SECRET_FIELD_SELECTOR
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


# Kopf runs indexers before any other handler of the same event, and runs no other handler at
# all until every indexed kind has been listed and each listed object indexed. Caching Jobs and
# their pods here is what keeps a new leader's first passes from planning before its Job watch
# has listed (they would not see a running Job and start another attempt).
@kopf.index("batch", "v1", "jobs", labels=MANAGED_JOBS)
async def job_seen(body: kopf.Body, **_: Any) -> None:
    watches.job_seen(reconciler, body)


@kopf.index("", "v1", "pods", labels=MANAGED_JOBS)
async def pod_seen(body: kopf.Body, **_: Any) -> None:
    watches.pod_seen(reconciler, body)


@kopf.on.event("batch", "v1", "jobs", labels=MANAGED_JOBS)
async def job_changed(event: Mapping[str, Any], body: kopf.Body, **_: Any) -> None:
    watches.job_event(reconciler, event.get("type"), body)


@kopf.on.event("", "v1", "pods", labels=MANAGED_JOBS)
async def pod_changed(event: Mapping[str, Any], body: kopf.Body, **_: Any) -> None:
    watches.pod_event(reconciler, event.get("type"), body)


@kopf.on.event("", "v1", "pods", labels={gate.WAIT_FOR_LABEL: kopf.PRESENT})
async def app_pod_changed(event: Mapping[str, Any], body: kopf.Body, **_: Any) -> None:
    watches.app_pod_event(reconciler, event.get("type"), body)


# The inputs migrations read (controller.inputs): an edit re-plans them, and a pass reads no GETs.
@kopf.on.event("", "v1", "configmaps")
async def config_map_changed(event: Mapping[str, Any], body: kopf.Body, **_: Any) -> None:
    watches.config_map_event(reconciler, event.get("type"), body)


async def secret_changed(event: Mapping[str, Any], body: kopf.Body, **_: Any) -> None:
    watches.secret_event(reconciler, event.get("type"), body)


def watch_secrets(registry: kopf.OperatorRegistry | None = None) -> None:
    """Watch Secrets too (opt-in: `--watch-secrets`, the chart's `watchSecrets: true` with its
    list/watch permission): without it every Secret read is a GET."""
    kopf.on.event("", "v1", "secrets", registry=registry or kopf.get_default_registry())(
        secret_changed
    )
    reconciler.gatherer.inputs.secrets_watched = True
