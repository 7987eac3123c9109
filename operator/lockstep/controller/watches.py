"""What each watch event means: keep the cache fresh, then say which migrations to look at.

The Kopf handlers (`handlers`) call these with the event's type and body; nothing here knows
Kopf. DELETED events drop the object from the cache; any other event stores its newest copy.
(A new leader's Jobs and pods are in the cache before the first event: controller.priming.)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lockstep import constants, gate
from lockstep.controller.cache import key_of
from lockstep.controller.reconcile import Reconciler


def migration_event(reconciler: Reconciler, kind: str | None, body: Mapping[str, Any]) -> None:
    key = key_of(body)
    if kind == "DELETED":
        reconciler.out_of_scope.discard(key)
        reconciler.deleted(key)
        return
    if not reconciler.scope.matches(body["metadata"].get("labels")):
        # Another instance's (or it just left this one's selector): forget it, touch nothing.
        reconciler.out_of_scope.add(key)
        if reconciler.cache.has_migration(key):
            reconciler.deleted(key)
        return
    reconciler.out_of_scope.discard(key)
    # The first sight of an object (operator start, or a new resource) gets a full pass.
    first_sight = not reconciler.cache.has_migration(key)
    reconciler.cache.put_migration(body)
    if first_sight and kind is None:
        # Kopf gives listed objects no event type: a (re)start lists them all at once.
        reconciler.trigger_listed(key)
    else:
        reconciler.trigger(key, full=first_sight)


def job_event(reconciler: Reconciler, kind: str | None, body: Mapping[str, Any]) -> None:
    """A migration Job moved: into the cache (out, when deleted), then its migration and every
    migration waiting on its database."""
    if kind == "DELETED":
        reconciler.cache.drop_job(key_of(body))
    else:
        reconciler.cache.put_job(body)
    labels = body["metadata"].get("labels") or {}
    reconciler.trigger((str(body["metadata"]["namespace"]), str(labels[constants.LABEL_MIGRATION])))
    reconciler.trigger_database(str(labels.get(constants.LABEL_DATABASE, "")))


def pod_event(reconciler: Reconciler, kind: str | None, body: Mapping[str, Any]) -> None:
    """Pods tell whether a Job's lock sidecar still waits for the database lock, and how the
    run ended. A pod that now belongs to another shard (its migration moved; the other shard
    relabelled it) leaves the cache."""
    own = _own_job_pod(reconciler, body)
    if kind == "DELETED" or not own:
        reconciler.cache.drop_pod(key_of(body))
    else:
        reconciler.cache.put_pod(body)
    migration = (body["metadata"].get("labels") or {}).get(constants.LABEL_MIGRATION)
    if migration and own:
        reconciler.trigger((str(body["metadata"]["namespace"]), str(migration)))


def _own_job_pod(reconciler: Reconciler, body: Mapping[str, Any]) -> bool:
    return reconciler.job_scope.matches(body["metadata"].get("labels"))


def app_pod_event(reconciler: Reconciler, kind: str | None, body: Mapping[str, Any]) -> None:
    """Application pods waiting for a migration: released when it succeeds."""
    key = key_of(body)
    if kind == "DELETED":
        reconciler.cache.drop_app_pod(key)
    else:
        reconciler.cache.put_app_pod(body)
    migration = (key[0], str((body["metadata"].get("labels") or {})[gate.WAIT_FOR_LABEL]))
    if migration in reconciler.out_of_scope:
        reconciler.cache.drop_app_pod(key)  # another instance releases it
        return
    if not reconciler.cache.has_migration(migration) and gate.has_gate(body):
        reconciler.actor.note_missing_migration(body, migration[1])
        return
    reconciler.trigger(migration)


def config_map_event(reconciler: Reconciler, kind: str | None, body: Mapping[str, Any]) -> None:
    """A ConfigMap's digest changed (or it came or went): re-plan the migrations that read it."""
    inputs = reconciler.gatherer.inputs
    if kind == "DELETED":
        reconciler.inputs_changed(inputs.drop_config_map(key_of(body)))
    else:
        reconciler.inputs_changed(inputs.put_config_map(body))


def secret_event(reconciler: Reconciler, kind: str | None, body: Mapping[str, Any]) -> None:
    """A Secret that migrations read changed (or came or went): re-plan them. Nothing is kept of
    a Secret that no migration reads."""
    inputs = reconciler.gatherer.inputs
    if kind == "DELETED":
        reconciler.inputs_changed(inputs.drop_secret(key_of(body)))
    else:
        reconciler.inputs_changed(inputs.put_secret(body))
