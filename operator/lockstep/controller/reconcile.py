"""Gather → plan → act for one DatabaseMigration.

`Reconciler.reconcile()` gathers the state of the world (from the in-memory cache that the watch
handlers keep, plus the few reads that only matter when work is pending), asks the pure planner
for one Decision, then acts: create at most one Job, write status once (only if it changed),
record Events, and schedule the next look.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from lockstep import constants, database, errors, gate, jobs, kube, planning, revisions
from lockstep.controller import metrics, observe
from lockstep.controller.cache import Cache, Key, key_of
from lockstep.model import Spec, SpecError, content_digest, parse_spec, spec_hash

log = logging.getLogger("lockstep.reconcile")

Emit = Callable[[Mapping[str, Any], planning.Event], None]
Clock = Callable[[], datetime]

REVISION_READ_TIMEOUT_SECONDS = 20.0
BLOCKED_RETRY_SECONDS = 1.0
# A full pass (Secret, ConfigMap, Jobs) at least this often: picks up an edited ConfigMap or a
# Secret that now exists, without watching every ConfigMap and Secret in the cluster.
DEFAULT_RESYNC_SECONDS = 600.0
CONFIG_ERROR_REASONS = frozenset(
    {
        constants.Reason.INVALID_SPEC,
        constants.Reason.SECRET_NOT_FOUND,
        constants.Reason.CONFIG_MAP_NOT_FOUND,
        errors.InvalidDatabaseUrl.reason,
    }
)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Reconciler:
    cache: Cache
    emit: Emit
    runner_image: str = constants.DEFAULT_RUNNER_IMAGE
    clock: Clock = utc_now
    resync_seconds: float = DEFAULT_RESYNC_SECONDS
    _running: dict[Key, asyncio.Task[None]] = field(default_factory=dict)
    _dirty: set[Key] = field(default_factory=set)
    _full: set[Key] = field(default_factory=set)
    _timers: dict[Key, asyncio.TimerHandle] = field(default_factory=dict)
    _warned_pods: set[str] = field(default_factory=set)
    _drift_due: dict[Key, float] = field(default_factory=dict)
    _database_locks: dict[str, asyncio.Lock] = field(default_factory=dict)

    def trigger(self, key: Key, full: bool = False) -> None:
        """Reconcile `key` soon. Coalesces: at most one pass runs per object, plus one queued.

        `full` asks for a pass that re-reads the Secret and the ConfigMap even if nothing that
        the watches see has changed.
        """
        if full:
            self._full.add(key)
        if key in self._running:
            self._dirty.add(key)
            return
        self._running[key] = asyncio.get_running_loop().create_task(self._loop(key))

    def trigger_database(self, database_key: str) -> None:
        """Wake every migration waiting on a database, e.g. when a Job on it finishes."""
        for key in self.cache.migrations_on_database(database_key):
            self.trigger(key)

    def forget(self, key: Key) -> None:
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()

    def deleted(self, key: Key) -> None:
        """The DatabaseMigration is gone: no timers, no cached body, no metric series."""
        self.forget(key)
        self._drift_due.pop(key, None)
        self.cache.drop_migration(key)
        metrics.forget(*key)

    async def _loop(self, key: Key) -> None:
        try:
            while True:
                self._dirty.discard(key)
                full = key in self._full
                self._full.discard(key)
                started = time.monotonic()
                try:
                    await self.reconcile(key, full=full)
                except Exception:
                    log.exception(
                        "reconcile failed", extra={"namespace": key[0], "migration": key[1]}
                    )
                    self._requeue(key, 10.0)
                    result = "error"
                else:
                    result = "ok"
                metrics.reconciles.labels(result).inc()
                metrics.reconcile_duration.labels(result).observe(time.monotonic() - started)
                if key not in self._dirty:
                    return
        finally:
            self._running.pop(key, None)

    async def reconcile(self, key: Key, full: bool = True) -> None:
        body = self.cache.migration(key)
        if body is None:
            self.forget(key)
            return
        quick = None if full else self._quick_observation(body)
        if quick is not None:
            decision = planning.plan(quick)
            if decision.create_job is None:
                await self._act(body, quick, decision, None)
                return
        observed, secret_url = await self._gather(body)
        decision = planning.plan(observed)
        await self._act(body, observed, decision, secret_url)

    def _quick_observation(self, body: Mapping[str, Any]) -> planning.Observed | None:
        """What planning needs when only Jobs or pods moved: no Secret or ConfigMap reads.

        Used while the spec is the one the status describes (same generation and retry token,
        spec hash known) and nothing finished that must be recorded; anything else, and any
        decision to create a Job, takes the full pass.
        """
        metadata, status = body["metadata"], body.get("status") or {}
        generation = int(metadata.get("generation", 0))
        token = (metadata.get("annotations") or {}).get(constants.ANNOTATION_RETRY)
        ready: Mapping[str, Any] = next(
            (c for c in status.get("conditions") or [] if c.get("type") == constants.READY), {}
        )
        if (
            not status.get("specHash")
            or status.get("observedGeneration") != generation
            or (token and token != status.get("retryToken"))
            or ready.get("reason") in CONFIG_ERROR_REASONS
        ):
            return None
        try:
            spec = parse_spec(body.get("spec") or {})
        except SpecError:
            return None
        if spec.when == "AfterRollout":
            return None  # planning needs the workloads' rollout state, which only a full pass reads
        namespace, name = metadata["namespace"], metadata["name"]
        observed = planning.Observed(
            name=name,
            generation=generation,
            spec=spec,
            spec_hash=str(status["specHash"]),
            status=status,
            now=self.clock(),
            retry_token=token,
            approved_plan=_approved_plan(body),
            jobs=tuple(observe.job_view(j) for j in self.cache.jobs_of((namespace, name))),
        )
        if _unrecorded_finished_job(observed) is not None:
            return None
        return replace(observed, lock_wait=self._lock_wait(namespace, observed.jobs))

    def _lock_wait(
        self, namespace: str, jobs_seen: tuple[planning.JobView, ...]
    ) -> planning.LockWait | None:
        waits = (
            observe.lock_wait(self.cache.pod_of_job(namespace, job.name), job.name)
            for job in jobs_seen
            if job.state == "Active"
        )
        return next((w for w in waits if w is not None), None)

    async def _gather(self, body: Mapping[str, Any]) -> tuple[planning.Observed, str | None]:
        metadata = body["metadata"]
        namespace, name = metadata["namespace"], metadata["name"]
        status = body.get("status") or {}
        base = planning.Observed(
            name=name,
            generation=int(metadata.get("generation", 0)),
            spec=None,
            spec_hash=str(status.get("specHash", "")),
            status=status,
            now=self.clock(),
            retry_token=(metadata.get("annotations") or {}).get(constants.ANNOTATION_RETRY),
            approved_plan=_approved_plan(body),
            jobs=tuple(observe.job_view(j) for j in self.cache.jobs_of((namespace, name))),
        )
        try:
            spec = parse_spec(body.get("spec") or {})
        except SpecError as invalid:
            return replace(
                base, config_error=planning.ConfigError("InvalidSpec", str(invalid))
            ), None
        inputs = await self._gather_inputs(namespace, spec)
        if isinstance(inputs, planning.ConfigError):
            return replace(base, spec=spec, config_error=inputs), None
        digest, url = inputs
        full_hash = spec_hash(body.get("spec") or {}, {"source": digest} if digest else None)
        observed = replace(base, spec=spec, spec_hash=full_hash)
        db_key = _database_key(url)
        if db_key is None:
            error = planning.ConfigError(
                errors.InvalidDatabaseUrl.reason,
                f"the URL in Secret {spec.url_secret.name} (key {spec.url_secret.key}) is not a "
                "database URL Lockstep understands (postgresql://, mysql://, mariadb://, sqlite:///)",
            )
            return replace(observed, config_error=error), None
        blocking = tuple(
            job["metadata"]["name"]
            for job in self.cache.active_jobs_on_database(db_key)
            if not _owned_by(job, name, namespace)
        )
        outcome = await self._gather_outcome(namespace, spec, observed, url)
        lock_wait = self._lock_wait(namespace, observed.jobs)
        rollouts = await self._gather_rollouts(namespace, spec)
        drift = None
        settled = outcome is None and planning.succeeded_for(status, full_hash)
        if settled and not any(j.state == "Active" for j in observed.jobs):
            drift = await self._drift_reading((namespace, name), spec, url)
        gathered = replace(
            observed,
            blocking_jobs=blocking,
            outcome=outcome,
            lock_wait=lock_wait,
            rollouts=rollouts,
            database_revision=drift,
        )
        return gathered, url

    async def _drift_reading(self, key: Key, spec: Spec, url: str) -> planning.DriftReading | None:
        """Read the version table when driftCheck.intervalSeconds has passed since the last time."""
        interval = spec.drift_interval_seconds
        if not interval or spec.engine == "sqlite":
            return None
        now = time.monotonic()
        # A second of slack: the resync timer that brings us here may fire a little early.
        if now + 1.0 < self._drift_due.get(key, 0.0):
            return None
        self._drift_due[key] = now + interval
        try:
            revision = await asyncio.wait_for(
                asyncio.to_thread(revisions.read_revision, spec.tool, url),
                REVISION_READ_TIMEOUT_SECONDS,
            )
        except Exception as error:  # noqa: BLE001 - an unreadable database is not drift
            log.warning("drift check: cannot read the version table: %s", type(error).__name__)
            return None
        log.info("drift check of %s/%s: the database is at %s", key[0], key[1], revision)
        return planning.DriftReading(revision)

    async def _gather_rollouts(
        self, namespace: str, spec: Spec
    ) -> tuple[planning.Rollout, ...] | None:
        if spec.when != "AfterRollout":
            return None
        found = []
        for workload in spec.workloads:
            body = await asyncio.to_thread(
                kube.read_workload, namespace, workload.kind, workload.name
            )
            found.append(observe.rollout(workload.kind, workload.name, body))
        return tuple(found)

    async def _gather_inputs(
        self, namespace: str, spec: Spec
    ) -> tuple[str | None, str] | planning.ConfigError:
        """The ConfigMap's digest and the database URL, read at the same time."""
        config_map = spec.source_config_map
        data, url = await asyncio.gather(
            asyncio.to_thread(kube.read_config_map_data, namespace, config_map)
            if config_map
            else _nothing(),
            asyncio.to_thread(
                kube.read_secret_value, namespace, spec.url_secret.name, spec.url_secret.key
            ),
            return_exceptions=True,
        )
        if isinstance(data, kube.NotFoundError):
            return planning.ConfigError(
                constants.Reason.CONFIG_MAP_NOT_FOUND,
                f"ConfigMap {config_map} (spec.source.configMapRef) does not exist "
                f"in namespace {namespace}: create it or fix the name",
            )
        if isinstance(url, kube.NotFoundError):
            return planning.ConfigError(
                constants.Reason.SECRET_NOT_FOUND,
                f"{url} (spec.database.urlSecretRef): create the Secret with the database URL "
                "under that key, in the same namespace",
            )
        for failure in (data, url):
            if isinstance(failure, BaseException):
                raise failure
        assert isinstance(url, str)
        digest = content_digest(data) if isinstance(data, Mapping) else None
        problem = await self._check_shadow(namespace, spec, url)
        return problem or (digest, url)

    async def _check_shadow(
        self, namespace: str, spec: Spec, url: str
    ) -> planning.ConfigError | None:
        """The rehearsal wipes the shadow database: it must exist and must not be the real one."""
        if spec.shadow_secret is None:
            return None
        ref = spec.shadow_secret
        try:
            shadow_url = await asyncio.to_thread(
                kube.read_secret_value, namespace, ref.name, ref.key
            )
        except kube.NotFoundError as error:
            return planning.ConfigError(
                constants.Reason.SECRET_NOT_FOUND,
                f"{error} (spec.verify.shadowDatabase.urlSecretRef): create the Secret with the "
                "shadow database's URL under that key, in the same namespace",
            )
        shadow_key = _database_key(shadow_url)
        if shadow_key is None or shadow_key == _database_key(url):
            what = "is not a database URL" if shadow_key is None else "names the real database"
            return planning.ConfigError(
                constants.Reason.INVALID_SPEC,
                f"spec.verify.shadowDatabase: the URL in Secret {ref.name} (key {ref.key}) {what}; "
                "the rehearsal wipes the shadow database, so it must be a separate, throwaway one",
            )
        return None

    async def _gather_outcome(
        self, namespace: str, spec: Spec, observed: planning.Observed, url: str
    ) -> planning.Outcome | None:
        job = _unrecorded_finished_job(observed)
        if job is None:
            return None
        planning_only = job.phase == constants.PHASE_PLAN
        container = constants.PLAN_CONTAINER if planning_only else constants.MIGRATE_CONTAINER
        pod = self.cache.pod_of_job(namespace, job.name)
        if not observe.container_terminated(pod, container):
            # The watch has not brought the pod's last state yet: ask the API server.
            pod = await asyncio.to_thread(kube.job_pod, namespace, job.name)
        report = observe.runner_report(observe.termination_message(pod, container))
        succeeded = job.state == "Succeeded"
        log_tail = ""
        if not succeeded and pod is not None:
            log_tail = await asyncio.to_thread(
                kube.read_log_tail,
                namespace,
                pod["metadata"]["name"],
                container,
                constants.LOG_TAIL_BYTES,
            )
        migrated = succeeded and not planning_only
        applied = await self._read_revision(spec, url) if migrated else None
        reason, message = _outcome_summary(report, job)
        rehearsal = None if succeeded else observe.failed_rehearsal_step(pod)
        if rehearsal is not None and pod is not None:
            reason, message = constants.Reason.REHEARSAL_FAILED, rehearsal.describe()
            log_tail = await asyncio.to_thread(
                kube.read_log_tail,
                namespace,
                pod["metadata"]["name"],
                rehearsal.container,
                constants.LOG_TAIL_BYTES,
            )
        return planning.Outcome(
            job=job.name,
            succeeded=succeeded,
            reason=reason,
            message=message,
            log_tail=log_tail,
            from_revision=_optional(report.get("from")),
            to_revision=_optional(report.get("to")),
            applied_revision=applied,
            lock_wait_seconds=observe.lock_wait_seconds(pod),
            plan=observe.reported_plan(report),
        )

    async def _read_revision(self, spec: Spec, url: str) -> str | None:
        """The revision the tool's own version table records; None when it cannot be read here."""
        if spec.engine == "sqlite":
            return None  # the file lives in the Job's pod, not here
        try:
            return await asyncio.wait_for(
                asyncio.to_thread(revisions.read_revision, spec.tool, url),
                REVISION_READ_TIMEOUT_SECONDS,
            )
        except Exception as error:  # noqa: BLE001 - any failure falls back to the Job's report
            log.warning("could not read the version table: %s", type(error).__name__)
            return None

    async def _act(
        self,
        body: Mapping[str, Any],
        observed: planning.Observed,
        decision: planning.Decision,
        url: str | None,
    ) -> None:
        metadata = body["metadata"]
        namespace, name = metadata["namespace"], metadata["name"]
        events = list(decision.events)
        previous_run = dict((body.get("status") or {}).get("lastRun") or {})
        for job in decision.delete_jobs:
            await asyncio.to_thread(kube.delete_job, namespace, job)
        released, still_gated = await self._release_gated_pods(body, decision.status)
        decision.status["gatedPods"] = still_gated
        if released:
            events.append(
                planning.Event(
                    "Normal",
                    "ReleasedPods",
                    f"released {released} pod(s) that waited for this migration",
                )
            )
        if decision.create_job is not None and observed.spec is not None and url is not None:
            created = await self._create_job(body, observed, decision.create_job, url)
            if created is None:
                # Another migration took the database since we looked: plan again shortly.
                self._requeue((namespace, name), BLOCKED_RETRY_SECONDS)
                return
            if not created:
                events = [e for e in events if e.reason != constants.Reason.JOB_CREATED]
        patch = status_patch(body.get("status") or {}, decision.status)
        if patch:
            await asyncio.to_thread(kube.patch_migration_status, namespace, name, patch)
            self.cache.update_status((namespace, name), decision.status)
        self._publish_metrics(namespace, name, previous_run, observed, decision)
        current_job = (
            decision.status.get("activeJob") or decision.status.get("lastRun") or {}
        ).get("job")
        for event in events:
            self.emit(body, event)
            log.log(
                logging.WARNING if event.type == "Warning" else logging.INFO,
                event.message,
                extra={
                    "namespace": namespace,
                    "migration": name,
                    "reason": event.reason,
                    "job": current_job,
                },
            )
        if decision.requeue_after is not None:
            self._requeue((namespace, name), decision.requeue_after)
        elif (namespace, name) not in self._timers:
            drift = observed.spec.drift_interval_seconds if observed.spec else None
            self._requeue((namespace, name), min(self.resync_seconds, drift or math.inf), full=True)

    async def _create_job(
        self,
        body: Mapping[str, Any],
        observed: planning.Observed,
        request: jobs.JobRequest,
        url: str,
    ) -> bool | None:
        """Create the run's Job: True if created, False if it existed, None if the database is busy.

        Check-and-reserve happens under a per-database lock with no await in between, and the
        new Job enters the cache before the API call: concurrent passes of other migrations on
        the same database then see it and wait (WaitingForJob) instead of racing.
        """
        metadata = body["metadata"]
        owner = jobs.Owner(metadata["name"], metadata["namespace"], metadata["uid"])
        assert observed.spec is not None
        database_key = _database_key(url) or "unknown"
        job = jobs.build_job(
            owner, observed.spec, observed.spec_hash, request, database_key, self.runner_image
        )
        async with self._database_locks.setdefault(database_key, asyncio.Lock()):
            others = [
                j
                for j in self.cache.active_jobs_on_database(database_key)
                if not _owned_by(j, owner.name, owner.namespace)
            ]
            if others and not request.is_plan:
                return None
            seen = self.cache.job(key_of(job))
            self.cache.put_job(job)
            try:
                await asyncio.to_thread(kube.create_job, owner.namespace, job)
            except Exception as error:
                # Undo the reservation: keep what the watch had (or will bring) of a Job that
                # already exists.
                if seen is not None:
                    self.cache.put_job(seen)
                else:
                    self.cache.drop_job(key_of(job))
                if isinstance(error, kube.ConflictError):
                    return False  # this exact run exists already: adopt it, never run it twice
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
                kube.remove_scheduling_gate,
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
        self.emit(pod, planning.Event("Warning", "MigrationNotFound", message))

    def _publish_metrics(
        self,
        namespace: str,
        name: str,
        previous_run: Mapping[str, Any],
        observed: planning.Observed,
        decision: planning.Decision,
    ) -> None:
        run = decision.status.get("lastRun") or {}
        if run and run.get("job") != previous_run.get("job"):
            tool = observed.spec.tool if observed.spec else "unknown"
            metrics.record_run(namespace, name, tool, run)
            waited = observed.outcome.lock_wait_seconds if observed.outcome else None
            if waited is not None:
                metrics.record_lock_wait(namespace, name, waited)
        metrics.set_state(namespace, name, metrics.state_of(decision.status))

    def _requeue(self, key: Key, delay: float, full: bool = True) -> None:
        self.forget(key)
        loop = asyncio.get_running_loop()
        self._timers[key] = loop.call_later(max(delay, 0.5), self._fire, key, full)

    def _fire(self, key: Key, full: bool) -> None:
        log.debug("timer fired for %s/%s (full=%s)", key[0], key[1], full)
        self._timers.pop(key, None)
        self.trigger(key, full=full)


def _unrecorded_finished_job(observed: planning.Observed) -> planning.JobView | None:
    """The newest Job (of either phase) of this spec that finished and is not in status yet.

    Only the newest Job of each phase counts: an older one was superseded by a later attempt,
    and recording it again would bring back an outdated result.
    """
    recorded = {run.get("job") for run in observed.status.get("history") or []}
    recorded.add((observed.status.get("lastRun") or {}).get("job"))
    recorded.add((observed.status.get("plan") or {}).get("job"))
    ours = [j for j in observed.jobs if observed.spec_hash.startswith(j.spec_hash)]
    newest = {}
    for job in sorted(ours, key=lambda j: j.attempt):
        newest[job.phase] = job
    candidates = [j for j in newest.values() if j.state != "Active" and j.name not in recorded]
    return max(candidates, key=_finish_order, default=None)


def _finish_order(job: planning.JobView) -> tuple[float, int]:
    finished = job.finished_at.timestamp() if job.finished_at else 0.0
    return finished, int(job.phase == constants.PHASE_MIGRATE)


async def _nothing() -> None:
    return None


def _approved_plan(body: Mapping[str, Any]) -> str | None:
    annotations = body["metadata"].get("annotations") or {}
    value = annotations.get(constants.ANNOTATION_APPROVE)
    return str(value).strip() or None if value else None


def _owned_by(job: Mapping[str, Any], name: str, namespace: str) -> bool:
    labels = job["metadata"].get("labels") or {}
    return (
        job["metadata"].get("namespace") == namespace
        and labels.get(constants.LABEL_MIGRATION) == name
    )


def _database_key(url: str) -> str | None:
    try:
        return database.database_key(database.identity_from_url(url))
    except errors.InvalidDatabaseUrl:
        return None


def status_patch(current: Mapping[str, Any], desired: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON merge patch from `current` to `desired`; empty when nothing changed.

    Keys the planner dropped (an activeJob that finished, a retry time that passed) are sent as
    null, which is how a merge patch deletes them.
    """
    patch: dict[str, Any] = {k: v for k, v in desired.items() if current.get(k) != v}
    patch.update({k: None for k in current if k not in desired})
    return patch


def _outcome_summary(report: Mapping[str, Any], job: planning.JobView) -> tuple[str, str]:
    """Reason and message of a finished run: the runner's own words when it left a report."""
    if job.state == "Failed":
        return str(report.get("reason") or job.reason), str(report.get("message") or job.message)
    applied = [str(v) for v in report.get("applied") or []]
    if report and not applied:
        return constants.Reason.SUCCEEDED, "nothing to apply: the database was up to date"
    if applied:
        more = int(report.get("appliedCount") or len(applied)) - len(applied)
        listed = ", ".join(applied) + (f" and {more} more" if more > 0 else "")
        verb = "reverted" if report.get("direction") == "down" else "applied"
        return constants.Reason.SUCCEEDED, f"{verb} {listed}"
    return constants.Reason.SUCCEEDED, "the migration command succeeded"


def _optional(value: Any) -> str | None:
    return None if value in (None, "") else str(value)
