"""Act on a Decision: delete and create Jobs, lift scheduling gates, write status, record Events.

At most one Job is created per pass, and status is written once, only if it changed. Creating
a Job checks and reserves the database in the cache first, so that two migrations of the same
database never run at the same time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from lockstep import constants, gate, kube
from lockstep.controller.cache import Cache, key_of
from lockstep.controller.cluster import KubeApi
from lockstep.controller.gather import Gathered
from lockstep.controller.scope import EVERYTHING, Selector, carried_labels
from lockstep.jobs import job_spec, naming
from lockstep.planning.facts import Decision, Event

log = logging.getLogger("lockstep.reconcile")

Emit = Callable[[Mapping[str, Any], Event], None]


@dataclass
class Actor:
    cache: Cache
    api: KubeApi
    emit: Emit
    runner_image: str = constants.DEFAULT_RUNNER_IMAGE
    # This instance's --selector: its Jobs carry the labels it names (controller.scope).
    scope: Selector = EVERYTHING
    _database_locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    _warned_pods: set[str] = field(default_factory=set)

    async def act(self, body: Mapping[str, Any], gathered: Gathered, decision: Decision) -> bool:
        """Carry out the decision; False if the database turned out to be busy (nothing done)."""
        metadata = body["metadata"]
        namespace, name = metadata["namespace"], metadata["name"]
        events = list(decision.events)
        for job in decision.delete_jobs:
            await asyncio.to_thread(self.api.delete_job, namespace, job)
        released, still_gated = await self._release_gated_pods(body, decision.status)
        decision.status["gatedPods"] = still_gated
        if released:
            events.append(
                Event(
                    "Normal",
                    "ReleasedPods",
                    f"released {released} pod(s) that waited for this migration",
                )
            )
        if decision.create_job is not None and gathered.url is not None:
            created = await self._create_job(body, gathered, decision.create_job)
            if created is None:
                return False
            if not created:
                events = [e for e in events if e.reason != constants.Reason.JOB_CREATED]
        patch = status_patch(body.get("status") or {}, decision.status)
        if patch:
            log.debug(
                "writing status: %s",
                ", ".join(sorted(patch)),
                extra={"namespace": namespace, "migration": name},
            )
            await asyncio.to_thread(self.api.patch_migration_status, namespace, name, patch)
            self.cache.update_status((namespace, name), decision.status)
        self._record_events(body, decision, events)
        return True

    def _record_events(
        self, body: Mapping[str, Any], decision: Decision, events: list[Event]
    ) -> None:
        """Each Event on the resource, and the same words in the log."""
        metadata = body["metadata"]
        active = decision.status.get("activeJob")
        # activeJob names its Job "name", lastRun "job" (the log said job=None for a new Job).
        current_job = (
            active["name"] if active else (decision.status.get("lastRun") or {}).get("job")
        )
        for event in events:
            self.emit(body, event)
            log.log(
                logging.WARNING if event.type == "Warning" else logging.INFO,
                event.message,
                extra={
                    "namespace": metadata["namespace"],
                    "migration": metadata["name"],
                    "reason": event.reason,
                    "job": current_job,
                },
            )

    async def _create_job(
        self, body: Mapping[str, Any], gathered: Gathered, request: naming.JobRequest
    ) -> bool | None:
        """Create the run's Job: True if created, False if it existed, None if the database is busy.

        Check-and-reserve happens under a per-database lock with no await in between, and the
        new Job enters the cache before the API call: concurrent passes of other migrations on
        the same database then see it and wait (WaitingForJob) instead of racing.
        """
        metadata = body["metadata"]
        owner = naming.Owner(metadata["name"], metadata["namespace"], metadata["uid"])
        observed = gathered.observed
        assert observed.spec is not None
        database_key = gathered.database_key or "unknown"
        carried = carried_labels(self.scope, metadata.get("labels"))
        job = job_spec.build_job(
            owner,
            observed.spec,
            observed.spec_hash,
            request,
            database_key,
            self.runner_image,
            carried,
        )
        async with self._database_locks.setdefault(database_key, asyncio.Lock()):
            others = self.cache.others_on_database(database_key, (owner.namespace, owner.name))
            if others and not request.is_plan:
                return None
            seen = self.cache.job(key_of(job))
            self.cache.put_job(job)
            try:
                await asyncio.to_thread(self.api.create_job, owner.namespace, job)
            except Exception as error:
                # Undo the reservation: keep what the watch had (or will bring) of a Job that
                # already exists.
                if seen is not None:
                    self.cache.put_job(seen)
                else:
                    self.cache.drop_job(key_of(job))
                if isinstance(error, kube.ConflictError):
                    # This exact run exists already: adopt it, never run it twice. Made before
                    # it would carry this instance's labels (an upgrade, sharding turned on, the
                    # migration moved between shards), it is labelled so the watch brings it.
                    if carried:
                        await asyncio.to_thread(
                            self.api.label_job, owner.namespace, job["metadata"]["name"], carried
                        )
                    return False
                raise
        log.info(
            "created job",
            extra={
                "namespace": owner.namespace,
                "migration": owner.name,
                "job": job["metadata"]["name"],
            },
        )
        return True

    async def _release_gated_pods(
        self, body: Mapping[str, Any], status: Mapping[str, Any]
    ) -> tuple[int, int]:
        """Lift the scheduling gate of pods whose image the database now has; count the rest."""
        key = key_of(body)
        now = {**body, "status": status}
        released = still = 0
        for pod in self.cache.app_pods_waiting_for(key, gate.WAIT_FOR_LABEL):
            if not gate.has_gate(pod):
                continue
            if gate.decide(pod, now, key[1]).gate:
                still += 1
                continue
            metadata = pod["metadata"]
            lifted = await asyncio.to_thread(
                self.api.remove_scheduling_gate,
                metadata["namespace"],
                metadata["name"],
                gate.gates_without_ours(pod),
                str(metadata.get("resourceVersion", "")),
            )
            released += 1 if lifted else 0
        return released, still

    def note_missing_migration(self, pod: Mapping[str, Any], name: str) -> None:
        """A gated pod names a DatabaseMigration that does not exist: say so, once per pod."""
        uid = str(pod["metadata"].get("uid"))
        if uid in self._warned_pods:
            return
        self._warned_pods.add(uid)
        message = (
            f"this pod waits for DatabaseMigration {name} (label {gate.WAIT_FOR_LABEL}), which "
            "does not exist in its namespace: create it, or fix the label"
        )
        self.emit(pod, Event("Warning", "MigrationNotFound", message))


def status_patch(current: Mapping[str, Any], desired: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON merge patch from `current` to `desired`; empty when nothing changed.

    Keys the planner dropped (an activeJob that finished, a retry time that passed) are sent as
    null, which is how a merge patch deletes them.
    """
    patch: dict[str, Any] = {k: v for k, v in desired.items() if current.get(k) != v}
    patch.update({k: None for k in current if k not in desired})
    return patch
