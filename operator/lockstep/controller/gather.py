"""Gather: what planning needs about one DatabaseMigration, read into one `Observed`.

Most passes plan from what the watches keep in the cache (`from_watches`: the resource, its Jobs
and their pods). A full pass (`gather`) also reads the Secret with the database URL, the
ConfigMap with the migrations, a finished Job's outcome, the workloads' rollout and, now and then,
the version table for drift. The URL stays in `Gathered`, never in `Observed`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from lockstep import conditions, constants, database, errors, kube, spec_history, version_tables
from lockstep.controller import cluster_facts, credentials, inputs, outcome
from lockstep.controller.cache import Cache, Key
from lockstep.controller.cluster import KubeApi
from lockstep.controller.inputs import CachedSecrets, InputCache
from lockstep.model import Spec, SpecError, content_digest, parse_spec, spec_hash
from lockstep.planning import history
from lockstep.planning.facts import ConfigError, DriftReading, JobView, LockWait, Observed, Rollout
from lockstep.status import migration_status
from lockstep.tools import version_table

log = logging.getLogger("lockstep.reconcile")

Clock = Callable[[], datetime]

CONFIG_ERROR_REASONS = frozenset(
    {
        constants.Reason.INVALID_SPEC,
        constants.Reason.SECRET_NOT_FOUND,
        constants.Reason.CONFIG_MAP_NOT_FOUND,
        errors.InvalidDatabaseUrl.reason,
    }
)


@dataclass(frozen=True)
class Gathered:
    """What one pass read: the facts for planning, and what only acting needs."""

    observed: Observed
    url: str | None = None  # the database URL: read by full passes only, never written anywhere
    database_key: str | None = None


@dataclass
class Gatherer:
    cache: Cache
    api: KubeApi
    clock: Clock
    # ConfigMap digests and referenced Secrets, kept by watches: a full pass reads no GETs
    inputs: InputCache = field(default_factory=InputCache)
    _drift_due: dict[Key, float] = field(default_factory=dict)
    # The last inputs a full read found, per migration, with the (generation, retry token) they
    # were read for: `gather(reuse_inputs=True)` records a run with the inputs it ran with.
    _inputs_read: dict[Key, tuple[tuple[int, str | None], tuple[str | None, str]]] = field(
        default_factory=dict
    )

    def __post_init__(self) -> None:
        self._secrets = CachedSecrets(self.inputs, self.api)

    def forget(self, key: Key) -> None:
        self._drift_due.pop(key, None)
        self._inputs_read.pop(key, None)
        self.inputs.forget(key)

    def from_watches(self, body: Mapping[str, Any]) -> Gathered | None:
        """What planning needs when only Jobs or pods moved: no Secret or ConfigMap reads.

        Used while the spec is the one the status describes (same generation and retry token,
        spec hash known) and nothing finished that must be recorded; anything else, and any
        decision to create a Job, takes the full pass (None here).
        """
        metadata, status = body["metadata"], body.get("status") or {}
        token = (metadata.get("annotations") or {}).get(constants.ANNOTATION_RETRY)
        ready = conditions.ready(status) or {}
        if (
            not status.get("specHash")
            or status.get("observedGeneration") != int(metadata.get("generation", 0))
            or (token and token != status.get("retryToken"))
            or ready.get("reason") in CONFIG_ERROR_REASONS
        ):
            return None
        try:
            spec = parse_spec(body.get("spec") or {}, _owner(body))
        except SpecError:
            return None
        if spec.when == "AfterRollout":
            return None  # planning needs the workloads' rollout state, which only a full pass reads
        observed = self._observed(body, spec, str(status["specHash"]))
        if outcome.unrecorded_finished_job(observed) is not None:
            return None
        return Gathered(replace(observed, lock_wait=self._lock_wait(body, observed.jobs)))

    async def gather(self, body: Mapping[str, Any], reuse_inputs: bool = False) -> Gathered:
        """Everything: the Secret, the ConfigMap, a finished Job's outcome, rollouts, drift.

        `reuse_inputs`: take the ConfigMap digest and URL of this process's last full read of
        the same generation and retry token, if there is one, instead of reading them again
        (the caller re-gathers without it before acting on them: creating a Job).
        """
        metadata, status = body["metadata"], body.get("status") or {}
        namespace, name = metadata["namespace"], metadata["name"]
        base = self._observed(body, None, str(status.get("specHash", "")))
        try:
            spec = parse_spec(body.get("spec") or {}, _owner(body))
        except SpecError as invalid:
            return Gathered(replace(base, config_error=ConfigError("InvalidSpec", str(invalid))))
        # Before reading: an edit of these from now on re-plans this migration (watches)
        self.inputs.use((namespace, name), inputs.references(namespace, spec))
        marker = (base.generation, base.retry_token)
        seen = self._inputs_read.get((namespace, name))
        if reuse_inputs and seen is not None and seen[0] == marker:
            found_inputs: tuple[str | None, str] | ConfigError = seen[1]
        else:
            self._inputs_read.pop((namespace, name), None)
            found_inputs = await self._inputs(namespace, spec)
        if isinstance(found_inputs, ConfigError):
            return Gathered(replace(base, spec=spec, config_error=found_inputs))
        self._inputs_read[(namespace, name)] = (marker, found_inputs)
        digest, url = found_inputs
        full_hash = spec_hash(body.get("spec") or {}, {"source": digest} if digest else None)
        observed = replace(base, spec=spec, spec_hash=full_hash)
        db_key = database_key(url)
        if db_key is None:
            error = ConfigError(
                errors.InvalidDatabaseUrl.reason,
                f"{credentials.source_of(spec)} is not a "
                "database URL Lockstep understands (postgresql://, mysql://, mariadb://, sqlite:///)",
            )
            return Gathered(replace(observed, config_error=error))
        blocking = tuple(
            job["metadata"]["name"]
            for job in self.cache.others_on_database(db_key, (namespace, name))
        )
        finished = outcome.unrecorded_finished_job(observed)
        found = (
            None
            if finished is None
            else await outcome.read_outcome(self.cache, self.api, namespace, spec, finished, url)
        )
        lock_wait = self._lock_wait(body, observed.jobs)
        rollouts = await self._rollouts(namespace, spec)
        drift = None
        settled = found is None and history.succeeded_for(status, full_hash)
        if settled and not any(j.state == "Active" for j in observed.jobs):
            drift = await self._drift_reading((namespace, name), spec, url)
        gathered = replace(
            observed,
            blocking_jobs=blocking,
            outcome=found,
            lock_wait=lock_wait,
            rollouts=rollouts,
            database_revision=drift,
        )
        return Gathered(gathered, url, db_key)

    def _observed(self, body: Mapping[str, Any], spec: Spec | None, hashed: str) -> Observed:
        """The facts every pass has: the resource itself and the Jobs the watches keep."""
        metadata = body["metadata"]
        return Observed(
            name=metadata["name"],
            generation=int(metadata.get("generation", 0)),
            spec=spec,
            spec_hash=hashed,
            status=migration_status(body),
            now=self.clock(),
            retry_token=(metadata.get("annotations") or {}).get(constants.ANNOTATION_RETRY),
            approved_plan=_approved_plan(body),
            jobs=tuple(
                cluster_facts.job_view(j)
                for j in self.cache.jobs_of((metadata["namespace"], metadata["name"]))
            ),
        )

    def _lock_wait(
        self, body: Mapping[str, Any], jobs_seen: tuple[JobView, ...]
    ) -> LockWait | None:
        namespace = body["metadata"]["namespace"]
        waits = (
            cluster_facts.lock_wait(self.cache.pod_of_job(namespace, job.name), job.name)
            for job in jobs_seen
            if job.state == "Active"
        )
        return next((w for w in waits if w is not None), None)

    async def _drift_reading(self, key: Key, spec: Spec, url: str) -> DriftReading | None:
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
                asyncio.to_thread(
                    version_tables.read_revision, spec.tool, url, *version_table.reader_table(spec)
                ),
                outcome.REVISION_READ_TIMEOUT_SECONDS,
            )
        except Exception as error:  # noqa: BLE001 - an unreadable database is not drift
            log.warning("drift check: cannot read the version table: %s", type(error).__name__)
            return None
        log.info("drift check of %s/%s: the database is at %s", key[0], key[1], revision)
        return DriftReading(revision)

    async def _rollouts(self, namespace: str, spec: Spec) -> tuple[Rollout, ...] | None:
        if spec.when != "AfterRollout":
            return None
        found = []
        for workload in spec.workloads:
            body = await asyncio.to_thread(
                self.api.read_workload, namespace, workload.kind, workload.name
            )
            found.append(cluster_facts.rollout(workload.kind, workload.name, body))
        return tuple(found)

    async def _inputs(self, namespace: str, spec: Spec) -> tuple[str | None, str] | ConfigError:
        """The ConfigMap's digest and the database URL: from the watches when they have them,
        else read (at the same time); a miss is never taken for absent."""
        config_map = spec.source_config_map
        known = self.inputs.config_map_digest(namespace, config_map) if config_map else None
        data, url = await asyncio.gather(
            asyncio.to_thread(self.api.read_config_map_data, namespace, config_map)
            if config_map and known is None
            else _nothing(),
            credentials.read_url(self._secrets, namespace, spec),
            return_exceptions=True,
        )
        if isinstance(data, kube.NotFoundError):
            return ConfigError(
                constants.Reason.CONFIG_MAP_NOT_FOUND,
                f"ConfigMap {config_map} (spec.source.configMapRef) does not exist "
                f"in namespace {namespace}: create it or fix the name",
                may_appear=True,
            )
        if isinstance(url, credentials.MissingKey):
            what = "the database URL" if spec.url_secret else "that part of the connection"
            return ConfigError(
                constants.Reason.SECRET_NOT_FOUND,
                f"{url} ({url.field}): create the Secret with {what} "
                "under that key, in the same namespace",
                may_appear=True,
            )
        for failure in (data, url):
            if isinstance(failure, BaseException):
                raise failure
        assert isinstance(url, str)
        digest = content_digest(data) if isinstance(data, Mapping) else known
        problem = await self._check_shadow(namespace, spec, url)
        return problem or (digest, url)

    async def _check_shadow(self, namespace: str, spec: Spec, url: str) -> ConfigError | None:
        """The rehearsal wipes the shadow database: it must exist and must not be the real one."""
        if spec.shadow_secret is None:
            return None
        ref = spec.shadow_secret
        try:
            shadow_url = await self._secrets.value(namespace, ref.name, ref.key)
        except kube.NotFoundError as error:
            return ConfigError(
                constants.Reason.SECRET_NOT_FOUND,
                f"{error} (spec.verify.shadowDatabase.urlSecretRef): create the Secret with the "
                "shadow database's URL under that key, in the same namespace",
                may_appear=True,
            )
        shadow_key = database_key(shadow_url)
        if shadow_key is None or shadow_key == database_key(url):
            what = "is not a database URL" if shadow_key is None else "names the real database"
            return ConfigError(
                constants.Reason.INVALID_SPEC,
                f"spec.verify.shadowDatabase: the URL in Secret {ref.name} (key {ref.key}) {what}; "
                "the rehearsal wipes the shadow database, so it must be a separate, throwaway one",
            )
        return None


def database_key(url: str) -> str | None:
    """The key of the database a URL names; None when it is not a database URL."""
    try:
        return database.database_key(database.identity_from_url(url))
    except errors.InvalidDatabaseUrl:
        return None


def _approved_plan(body: Mapping[str, Any]) -> str | None:
    annotations = body["metadata"].get("annotations") or {}
    value = annotations.get(constants.ANNOTATION_APPROVE)
    return str(value).strip() or None if value else None


async def _nothing() -> None:
    return None


def _owner(body: Mapping[str, Any]) -> str:
    """Whose history the runs of this resource keep (spec_history.history_owner)."""
    metadata = body["metadata"]
    raw_spec = body.get("spec") or {}
    return spec_history.history_owner(metadata["namespace"], metadata["name"], raw_spec)
