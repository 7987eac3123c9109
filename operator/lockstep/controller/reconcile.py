"""Gather → plan → act for one DatabaseMigration, and the object that wires the parts together.

`Reconciler.reconcile_once()` gathers the state of the world (from the in-memory cache that the
watch handlers keep, plus the few reads that only matter when work is pending), asks the pure
planner for one Decision, acts on it (at most one Job, one status write, Events), records
metrics and schedules the next look. The Kubernetes calls go through an injected `KubeApi`
(the real `lockstep.kube` module unless a test passes a fake).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from lockstep import kube
from lockstep.controller import metrics
from lockstep.controller.act import Actor, Emit
from lockstep.controller.cache import Cache, Key
from lockstep.controller.cluster import KubeApi
from lockstep.controller.gather import Clock, Gathered, Gatherer
from lockstep.controller.pacing import Pacer
from lockstep.controller.retention import DEFAULT_KEEP_FINISHED_JOBS, Retention
from lockstep.controller.scheduler import Scheduler
from lockstep.controller.scope import EVERYTHING, Selector
from lockstep.planning import chain
from lockstep.planning.facts import Decision

BLOCKED_RETRY_SECONDS = 1.0
# A full pass at least this often: a safety net (drift checks, a watch event lost across a
# relist). Edited, created and deleted ConfigMaps and Secrets re-plan at once (watches).
DEFAULT_RESYNC_SECONDS = 600.0


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Reconciler:
    cache: Cache
    emit: Emit
    clock: Clock = utc_now
    resync_seconds: float = DEFAULT_RESYNC_SECONDS
    api: KubeApi = field(default=kube)
    # The DatabaseMigrations this instance owns (--selector); others are left to their own.
    scope: Selector = EVERYTHING
    # The part of it this instance's Jobs and their pods carry (scope.job_scope).
    job_scope: Selector = EVERYTHING
    # Keys of DatabaseMigrations seen but out of scope: their gated pods are not ours to judge.
    out_of_scope: set[Key] = field(default_factory=set)
    # Finished Jobs kept per migration (--keep-finished-jobs; -1 keeps all).
    keep_finished_jobs: int = DEFAULT_KEEP_FINISHED_JOBS
    # Paces the first full passes of a listing (restart): --initial-pass-rate.
    pacer: Pacer = field(default_factory=Pacer)
    scheduler: Scheduler = field(init=False)
    gatherer: Gatherer = field(init=False)
    actor: Actor = field(init=False)
    retention: Retention = field(init=False)

    def __post_init__(self) -> None:
        self.scheduler = Scheduler(self.reconcile_once)
        self.gatherer = Gatherer(self.cache, self.api, self.clock)
        self.actor = Actor(self.cache, self.api, self.emit)
        self.retention = Retention(self.cache, self.api, self.keep_finished_jobs)

    async def reconcile_once(self, key: Key, full: bool = True) -> None:
        """One pass: gather, plan, act, record metrics, schedule the next look."""
        body = self.cache.migration(key)
        if body is None:
            self.scheduler.forget(key)
            return
        previous_run = dict((body.get("status") or {}).get("lastRun") or {})
        gathered, decision, read = await self._gather_and_plan(body, full)
        if gathered.database_key is not None:
            self.cache.note_database(key, gathered.database_key)
        if not await self.actor.act(body, gathered, decision):
            # Another migration took the database since we looked: plan again shortly.
            self.scheduler.requeue(key, BLOCKED_RETRY_SECONDS)
            return
        # Only after the status write: a Job goes once status records what it did.
        await self.retention.prune(key)
        observed = gathered.observed
        metrics.record_decision(
            *key,
            tool=observed.spec.tool if observed.spec else "unknown",
            previous_run=previous_run,
            status=decision.status,
            lock_wait_seconds=observed.outcome.lock_wait_seconds if observed.outcome else None,
        )
        if decision.requeue_after is not None:
            # A look again asked by a pass that needed no reads needs none either (the quick
            # path falls back to them by itself): a lock-wait check costs no GETs.
            self.scheduler.requeue(key, decision.requeue_after, full=read)
        else:
            drift = observed.spec.drift_interval_seconds if observed.spec else None
            self.scheduler.resync(key, min(self.resync_seconds, drift or math.inf))

    async def _gather_and_plan(
        self, body: Mapping[str, Any], full: bool
    ) -> tuple[Gathered, Decision, bool]:
        """Plan from what the watches saw when that is enough; from a full read when it is not
        (the third value: whether this pass needed a full read).

        A pass that a watch event started (not `full`) and that must record a finished Job
        takes the ConfigMap digest and URL its run was created with (`reuse_inputs`): two GETs
        fewer between the Job's end and Ready. Creating a Job always reads them afresh.
        """
        if not full:
            quick = self.gatherer.from_watches(body)
            if quick is not None:
                decision = chain.plan(quick.observed)
                if decision.create_job is None:  # creating a Job needs the database URL
                    return quick, decision, False
            else:
                gathered = await self.gatherer.gather(body, reuse_inputs=True)
                decision = chain.plan(gathered.observed)
                if decision.create_job is None:
                    return gathered, decision, True
        gathered = await self.gatherer.gather(body)
        return gathered, chain.plan(gathered.observed), True

    # What the watch handlers call (through `watches`).
    def trigger(self, key: Key, full: bool = False) -> None:
        self.scheduler.trigger(key, full)

    def trigger_listed(self, key: Key) -> None:
        """A migration seen in a watch's listing (a restart): its full pass, paced."""
        delay = self.pacer.delay()
        if delay <= 0:
            self.scheduler.trigger(key, full=True)
        else:
            self.scheduler.requeue(key, delay, full=True, at_least=0.0)

    def inputs_changed(self, keys: set[Key]) -> None:
        """A ConfigMap or Secret these migrations read changed: a full pass of each, now."""
        for key in sorted(keys):
            if self.cache.has_migration(key):
                self.scheduler.trigger(key, full=True)

    def trigger_database(self, database_key: str) -> None:
        """Wake every migration waiting on a database, e.g. when a Job on it finishes."""
        for key in self.cache.migrations_on_database(database_key):
            self.scheduler.trigger(key)

    def deleted(self, key: Key) -> None:
        """The DatabaseMigration is gone: no timers, no cached body, no metric series."""
        self.scheduler.forget(key)
        self.gatherer.forget(key)
        self.cache.drop_migration(key)
        metrics.forget(*key)
