"""Kopf handlers: the only module with `@kopf.*` decorators. Each is a line or two.

Each handler hands its event to `watches` (cache, then triggers); all decisions live in `planning`.
"""

from __future__ import annotations

import contextvars
import logging
import os
import socket
from collections.abc import Mapping
from typing import Any, cast

import kopf
from kopf._core.actions import execution as kopf_execution  # not exported by kopf
from kopf._core.reactor import inventory as kopf_inventory
from kopf._core.reactor import subhandling as kopf_subhandling

from lockstep import constants, gate, kube
from lockstep.controller import priming, scope, watches
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
# The namespaces this instance watches (--namespace); empty: all. Set by controller.main.
watched_namespaces: tuple[str, ...] = ()


def scope_to(selector: scope.Selector) -> None:
    """Act on the DatabaseMigrations `selector` matches and watch only their Jobs (before Kopf
    starts: `configure` sets the Job watch's server-side selector from it)."""
    reconciler.scope = reconciler.actor.scope = selector
    reconciler.job_scope = scope.job_scope(selector)


def _own_pod(*, labels: Mapping[str, str], namespace: str | None, name: str, **_: Any) -> bool:
    """A Job pod of this shard, or one cached before it left the shard (relabelled: `watches`
    drops it). Pods are not filtered by the API server (see `pod_changed`): other shards' Job pods
    end here, before any handler runs."""
    return reconciler.job_scope.matches(labels) or reconciler.cache.has_pod((str(namespace), name))


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


# How Kopf's watches list. Where the API server streams a watch's initial list (WatchList, on
# by default since Kubernetes 1.34; controller.main asks the server), Kopf streams it: objects
# arrive one by one, no list response holds them all, and there is no continue token to expire.
# Otherwise listings stay unpaged (Kopf's default). Pages of 500 lowered a restart's peak, but
# a page's continue token expires with the API server's compaction (5 minutes by default): at
# 10,000 migrations with 5 releases each the operator listed for longer than that, Kopf's Job
# watch failed with 410 "continue parameter is too old" and the operator exited (bench/fleet.py,
# ADR 0015 point 7). A crash loop is worse than memory. Unpaged, Kopf alone (no-op handlers)
# peaked at 2,955 MiB on that fleet.
streaming_lists = False
LIST_CHUNK = None
# How long Kopf keeps an object's worker after its last event (Kopf's default: 5 s). An idle
# worker still holds the last body it handled; after a listing that is every object listed in
# the last 5 s (1,400 migrations, 7,000 Jobs and pods: peak RSS 240 -> 183 MiB with 0.1 s,
# bench/fleet.py). A worker costs a task to start again, which Lockstep's event rate affords.
WORKER_IDLE_SECONDS = 0.1


class ForgetfulMemories(kopf_inventory.ResourceMemories):
    """Kopf keeps a per-object record (memo, throttler, daemon and index state; about 0.9 KB)
    for every object it ever saw, until it is deleted: 110,000 records for 10,000 migrations
    with 5 releases. Lockstep has event handlers only (no indexers, daemons, timers, change or
    resume handlers), so the records would hold nothing it uses: none is kept."""

    async def recall(
        self,
        raw_body: kopf.RawBody,
        *,
        memobase: Any = None,
        noticed_by_listing: bool = False,
        ephemeral: bool = False,
    ) -> kopf_inventory.ResourceMemory:
        return await super().recall(
            raw_body, memobase=memobase, noticed_by_listing=noticed_by_listing, ephemeral=True
        )


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.posting.loggers = False  # Events come from the planner, not from log lines
    # `kubectl describe` shows "From lockstep", and reportingInstance names the replica.
    settings.posting.reporting_component = constants.REPORTING_COMPONENT
    settings.posting.reporting_instance = os.environ.get("HOSTNAME") or socket.gethostname()
    settings.posting.event_name_prefix = "lockstep-event-"
    settings.persistence.diffbase_storage = _NoDiffBase()
    settings.watching.server_timeout = 300
    settings.watching.chunk_size = LIST_CHUNK
    settings.watching.initial_streaming = streaming_lists
    settings.queueing.idle_timeout = WORKER_IDLE_SECONDS
    settings.networking.error_backoffs = [1, 2, 5, 10]
    settings.watching.field_selectors["v1", "secrets"] = SECRET_FIELD_SELECTOR
    # Only Lockstep's Jobs, and only this shard's, reach this instance (ADR 0020).
    settings.watching.label_selectors["batch", "v1", "jobs"] = scope.job_selector(reconciler.scope)
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


# What Kopf sets for one handler call (the cause holds the event's body): unset in the context
# passes and timers run in, which keeps the operator-wide ones (event posting, credentials).
_PER_CALL: tuple[contextvars.ContextVar[Any], ...] = (
    kopf_execution.cause_var,
    kopf_execution.handler_var,
    kopf_execution.subrefs_var,
    kopf_execution.sublifecycle_var,
    kopf_execution.subsettings_var,
    kopf_subhandling.subregistry_var,
    kopf_subhandling.subexecuted_var,
)


def _lean_context() -> None:
    """Once, from the first handler call: the context without the per-call variables."""
    if reconciler.scheduler.context is None:
        context = contextvars.copy_context()
        for variable in _PER_CALL:
            if variable in context:
                context.run(variable.set, None)
        reconciler.scheduler.context = context


@kopf.on.event(constants.GROUP, constants.VERSION, constants.PLURAL)
async def migration_changed(event: Mapping[str, Any], body: kopf.Body, **_: Any) -> None:
    _lean_context()
    watches.migration_event(reconciler, event.get("type"), body)


@kopf.on.startup(backoff=priming.RETRY_SECONDS)
async def prime_cache(**_: Any) -> None:
    """This shard's Jobs and their pods into the cache before Kopf starts any watch
    (controller.priming): a new leader's first passes see the Jobs that are running. While the
    API server cannot answer, Kopf calls this again (no watch starts meanwhile)."""
    selector = scope.job_selector(reconciler.scope)
    try:
        await priming.prime(
            reconciler.api, cache.put_job, cache.put_pod, watched_namespaces, selector
        )
    except kube.KubeError as error:
        raise kopf.TemporaryError(f"cannot list Lockstep's Jobs yet: {error}") from None


# Jobs need no client-side shard filter: the API server's selector (`configure`) already sends
# only this shard's, and a Job that leaves it (relabelled) arrives as DELETED, to be dropped.
# Pods are watched without a server-side selector: one selector cannot take both Lockstep's Job
# pods and the application pods the rollout gate holds (ADR 0020 says why no narrower watch);
# `_own_pod` drops other shards' Job pods before any handler runs.


@kopf.on.event("batch", "v1", "jobs", labels=MANAGED_JOBS)
async def job_changed(event: Mapping[str, Any], body: kopf.Body, **_: Any) -> None:
    _lean_context()
    watches.job_event(reconciler, event.get("type"), body)


@kopf.on.event("", "v1", "pods", labels=MANAGED_JOBS, when=_own_pod)
async def pod_changed(event: Mapping[str, Any], body: kopf.Body, **_: Any) -> None:
    _lean_context()
    watches.pod_event(reconciler, event.get("type"), body)


@kopf.on.event("", "v1", "pods", labels={gate.WAIT_FOR_LABEL: kopf.PRESENT})
async def app_pod_changed(event: Mapping[str, Any], body: kopf.Body, **_: Any) -> None:
    _lean_context()
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
