"""An in-memory view of DatabaseMigrations and Lockstep's Jobs, kept fresh by the watches.

Reconciling from this cache instead of GET-ting objects keeps an idle or busy operator cheap for
the API server: the watch streams are the only reads of these kinds.

Every question a pass asks (the Jobs of a migration, the pod of a Job, the Jobs on a database,
the migrations a finished Job may unblock) is answered from an index kept on put and drop, so a
pass costs the same with 100 or 10,000 migrations cached: a scan of every cached object per
event made bringing N migrations up O(N²). Bodies are kept slim (`kept_fields`).

A Job's pods are kept only while a pass may read them (`_pods_read`): while the Job runs (the
lock sidecar's wait) and until its outcome is recorded. A release history's pods are not: at
10,000 migrations with 5 releases each they were 50,000 of the start's peak (ADR 0015 point 10).
A pass that finds no pod where it needs one asks the API server (`outcome.read_outcome`).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from lockstep import conditions, constants, gate
from lockstep.controller import cluster_facts, kept_fields
from lockstep.controller.cache_index import Index
from lockstep.controller.cache_index import Key as Key  # re-exported: the cache's key type
from lockstep.planning import runs
from lockstep.planning.facts import JobView


def key_of(body: Mapping[str, Any]) -> Key:
    """(namespace, name), with the strings the cached slim copies share (kept_fields)."""
    metadata = body["metadata"]
    return (sys.intern(str(metadata.get("namespace", ""))), sys.intern(str(metadata["name"])))


def _by_label(name: str, namespaced: bool = True) -> Callable[[Mapping[str, Any]], Any]:
    def value_of(body: Mapping[str, Any]) -> Any:
        label = _label(body, name)
        if not label:
            return None
        return (key_of(body)[0], label) if namespaced else label

    return value_of


# How long a Job Lockstep deleted is kept out of the cache when no DELETED event says it is gone
# (a watch that listed again after the deletion sends none).
DELETED_JOB_MEMORY_SECONDS = 600.0


class Cache:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        # Each as compressed JSON (kept_fields.packed): read once or twice per pass, 5 KB as dicts
        self._migrations: dict[Key, bytes] = {}
        # Running Jobs as slim dicts, finished ones as records (kept_fields.FinishedJob)
        self._jobs: dict[Key, dict[str, Any] | kept_fields.FinishedJob] = {}
        self._pods: dict[Key, dict[str, Any]] = {}
        self._app_pods: dict[Key, dict[str, Any]] = {}
        # (namespace, migration) -> its Jobs; database key -> Jobs on it
        self._jobs_by_migration = Index(_by_label(constants.LABEL_MIGRATION))
        self._jobs_by_database = Index(_by_label(constants.LABEL_DATABASE, namespaced=False))
        # (namespace, job name) -> its pods; (namespace, migration) -> app pods waiting for it
        self._pods_by_job = Index(_by_label("job-name"))
        self._app_pods_by_migration = Index(_by_label(gate.WAIT_FOR_LABEL))
        # Migrations whose Ready reason is WaitingForJob, and the database each one's last full
        # pass found in its URL (the body does not name it)
        self._waiting: set[Key] = set()
        self._database_of: dict[Key, str] = {}
        # Puts and drops so far: how much the cache churned since it was last compacted.
        self.changes = 0
        # Jobs Lockstep deleted whose DELETED event has not come yet: key -> (uid, when), oldest
        # first (see `job_deleted`).
        self._deleted_jobs: dict[Key, tuple[str, float]] = {}
        # The uids of those Jobs -> when: their pods stay out of the cache (see `job_deleted`).
        self._deleted_job_uids: dict[str, float] = {}

    # DatabaseMigrations
    def put_migration(self, body: Mapping[str, Any]) -> Key:
        self.changes += 1
        key = key_of(body)
        slim = kept_fields.migration(body)
        self._migrations[key] = kept_fields.packed(slim)
        self._note_waiting(key, slim)
        self._drop_unread_pods(key)
        return key

    def drop_migration(self, key: Key) -> None:
        self.changes += 1
        self._migrations.pop(key, None)
        self._waiting.discard(key)
        self._database_of.pop(key, None)

    def note_database(self, key: Key, database_key: str) -> None:
        """The database a full pass found in the migration's URL (see migrations_on_database)."""
        if key in self._migrations:
            self._database_of[key] = database_key

    def migration(self, key: Key) -> dict[str, Any] | None:
        """A fresh copy of the cached body (changing it changes nothing in the cache)."""
        packed = self._migrations.get(key)
        return None if packed is None else kept_fields.unpacked(packed)

    def has_migration(self, key: Key) -> bool:
        return key in self._migrations

    def migration_keys(self) -> list[Key]:
        return list(self._migrations)

    def update_status(self, key: Key, status: Mapping[str, Any]) -> None:
        """Remember a status we wrote, so the next pass plans from it even before the watch echo."""
        body = self.migration(key)
        if body is not None:
            body["status"] = status
            self._migrations[key] = kept_fields.packed(body)
            self._note_waiting(key, body)
            self._drop_unread_pods(key)

    def _note_waiting(self, key: Key, body: Mapping[str, Any]) -> None:
        if _ready_reason(body) == constants.Reason.WAITING_FOR_JOB:
            self._waiting.add(key)
        else:
            self._waiting.discard(key)

    # Jobs
    def put_job(self, body: Mapping[str, Any]) -> None:
        key = key_of(body)
        deleted = self._deleted_jobs.get(key)
        if deleted is not None:
            if deleted[0] == body["metadata"].get("uid"):
                return  # an event from before Lockstep deleted it
            del self._deleted_jobs[key]  # a new Job of that name
        self.changes += 1
        finished = kept_fields.finished_job(body)
        slim = kept_fields.job(body) if finished is None else finished.body()
        self._jobs[key] = slim if finished is None else finished
        self._jobs_by_migration.put(key, slim)
        self._jobs_by_database.put(key, slim)
        self._drop_unread_pods(_migration_of(slim))

    def job(self, key: Key) -> dict[str, Any] | None:
        kept = self._jobs.get(key)
        return None if kept is None else _as_body(kept)

    def _job_body(self, key: Key) -> dict[str, Any]:
        return _as_body(self._jobs[key])

    def drop_job(self, key: Key) -> None:
        self.changes += 1
        self._deleted_jobs.pop(key, None)
        self._jobs.pop(key, None)
        self._jobs_by_migration.drop(key)
        self._jobs_by_database.drop(key)

    def job_deleted(self, key: Key) -> None:
        """Lockstep deleted this Job: out of the cache, and kept out until its DELETED event.

        A watch that lags (a start's streamed list under load) can deliver an event from before
        the deletion after it; put back, the Job was deleted again by the next pass (5,858 second
        DELETEs in one 10,000-migration start, docs/performance-history.md). Events for that uid are
        ignored until the DELETED event, or DELETED_JOB_MEMORY_SECONDS, whichever comes first.

        Its pods leave the cache with it: the garbage collector deletes them at its own pace
        (36,701 still cached 12 minutes into a 10,000-migration start, ADR 0015 point 10), and
        nothing reads the pods of a Job that is gone. Events of pods it owned are ignored for
        DELETED_JOB_MEMORY_SECONDS.
        """
        body = self.job(key)
        uid = str(((body or {}).get("metadata") or {}).get("uid") or "")
        self.drop_job(key)
        for pod in list(self._pods_by_job.get(key)):
            self.drop_pod(pod)
        now = self._clock()
        _forget_older(self._deleted_jobs, now, lambda entry: entry[1])
        _forget_older(self._deleted_job_uids, now, lambda since: since)
        if uid:
            self._deleted_jobs[key] = (uid, now)
            self._deleted_job_uids[uid] = now

    def jobs_of(self, migration: Key) -> list[dict[str, Any]]:
        return [self._job_body(k) for k in sorted(self._jobs_by_migration.get(migration))]

    def active_jobs_on_database(self, database_key: str) -> list[dict[str, Any]]:
        running = (k for k in self._jobs_by_database.get(database_key) if _running(self._jobs[k]))
        jobs = (self._job_body(k) for k in sorted(running))
        return [
            job
            for job in jobs
            # Plan Jobs only read: they neither hold nor wait for the database's lock.
            if _label(job, constants.LABEL_PHASE) != constants.PHASE_PLAN
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
        owners = body["metadata"].get("ownerReferences") or ()
        if self._deleted_job_uids and any(o.get("uid") in self._deleted_job_uids for o in owners):
            return  # a pod of a Job Lockstep deleted (see `job_deleted`)
        key = key_of(body)
        if not self._pods_read((key[0], _label(body, "job-name"))):
            self.drop_pod(key)
            return
        self.changes += 1
        slim = kept_fields.job_pod(body)
        self._pods[key] = slim
        self._pods_by_job.put(key, slim)

    def _pods_read(self, job_key: Key) -> bool:
        """Whether a pass may still read this Job's pods: the Job is not cached (yet), runs, or
        finished without its outcome in status and without a later Job of its phase."""
        job = self.job(job_key)
        if job is None:
            return True
        view = cluster_facts.job_view(job)
        if view.state == "Active":
            return True
        migration_key = _migration_of(job)
        migration = self.migration(migration_key)
        if migration is not None and view.name in runs.recorded_jobs(migration.get("status") or {}):
            return False
        others = (cluster_facts.job_view(j) for j in self.jobs_of(migration_key))
        return not any(_later(other, view) for other in others)

    def _drop_unread_pods(self, migration: Key) -> None:
        """Drop the pods of this migration's Jobs that no pass will read any more."""
        for job_key in sorted(self._jobs_by_migration.get(migration)):
            pods = self._pods_by_job.get(job_key)
            if pods and not self._pods_read(job_key):
                for pod in list(pods):
                    self.drop_pod(pod)

    def has_pod(self, key: Key) -> bool:
        return key in self._pods

    def drop_pod(self, key: Key) -> None:
        self.changes += 1
        self._pods.pop(key, None)
        self._pods_by_job.drop(key)

    def pod_of_job(self, namespace: str, job: str) -> dict[str, Any] | None:
        """The newest pod of a Job (a Job of Lockstep's has one pod at a time)."""
        pods = [self._pods[k] for k in sorted(self._pods_by_job.get((namespace, job)))]
        return max(pods, key=lambda p: str(p["metadata"].get("creationTimestamp")), default=None)

    # Application pods that wait for a migration (label lockstep.dev/wait-for)
    def put_app_pod(self, body: Mapping[str, Any]) -> None:
        self.changes += 1
        key = key_of(body)
        slim = kept_fields.app_pod(body)
        self._app_pods[key] = slim
        self._app_pods_by_migration.put(key, slim)

    def drop_app_pod(self, key: Key) -> None:
        self.changes += 1
        self._app_pods.pop(key, None)
        self._app_pods_by_migration.drop(key)

    def app_pods_waiting_for(
        self, migration: Key, label: str = gate.WAIT_FOR_LABEL
    ) -> list[dict[str, Any]]:
        if label != gate.WAIT_FOR_LABEL:
            raise ValueError(f"app pods are indexed by {gate.WAIT_FOR_LABEL}, not {label}")
        return [self._app_pods[k] for k in sorted(self._app_pods_by_migration.get(migration))]

    def migrations_on_database(self, database_key: str) -> Iterator[Key]:
        """Migrations waiting for a Job on this database: the ones a finished Job may unblock.

        A waiting migration whose database is not known yet (no full pass noted it) is woken
        too. Work per Job event is the number of waiting migrations, not of all migrations that
        ever had a Job on the database (at fleet scale, a shared database has thousands).
        """
        for key in sorted(self._waiting):
            if self._database_of.get(key, database_key) == database_key:
                yield key

    def compacting(self, batch: int = 500) -> Iterator[None]:
        """Copy every cached body anew, letting the old copies go; pauses (yields) after each
        `batch` copies so that the caller can let other work run (controller.memory says why)."""
        for bodies in (self._jobs, self._pods, self._app_pods):  # migrations are packed bytes
            for done, key in enumerate(list(bodies), start=1):
                body = bodies.get(key)  # dropped or replaced meanwhile: skipped or copied
                if isinstance(body, dict):  # a finished Job's record is left as it is
                    bodies[key] = kept_fields.shared_copy(body)
                if done % batch == 0:
                    yield

    def __len__(self) -> int:
        return len(self._migrations) + len(self._jobs) + len(self._pods) + len(self._app_pods)

    def sizes(self) -> dict[str, int]:
        """How many objects of each kind are cached (metrics, the scale bench)."""
        return {
            "migrations": len(self._migrations),
            "jobs": len(self._jobs),
            "pods": len(self._pods),
            "app_pods": len(self._app_pods),
        }


def _forget_older(entries: dict[Any, Any], now: float, since: Callable[[Any], float]) -> None:
    """Drop the entries (oldest first) noted more than DELETED_JOB_MEMORY_SECONDS ago."""
    while entries:
        oldest = next(iter(entries))
        if now - since(entries[oldest]) < DELETED_JOB_MEMORY_SECONDS:
            return
        del entries[oldest]


def _as_body(kept: dict[str, Any] | kept_fields.FinishedJob) -> dict[str, Any]:
    return kept.body() if isinstance(kept, kept_fields.FinishedJob) else kept


def _running(kept: dict[str, Any] | kept_fields.FinishedJob) -> bool:
    return not isinstance(kept, kept_fields.FinishedJob)


def _migration_of(job: Mapping[str, Any]) -> Key:
    return (str(job["metadata"].get("namespace", "")), _label(job, constants.LABEL_MIGRATION))


def _later(other: JobView, job: JobView) -> bool:
    """`other` supersedes finished `job`: a Job of its phase still running or finished later."""
    if other.name == job.name or other.phase != job.phase:
        return False
    if other.state == "Active":
        return True
    if other.finished_at is None or job.finished_at is None:
        return False  # no order to go by: keep the pods
    return (other.finished_at, other.name) > (job.finished_at, job.name)


def _label(body: Mapping[str, Any], name: str) -> str:
    return str((body.get("metadata", {}).get("labels") or {}).get(name, ""))


def _ready_reason(body: Mapping[str, Any]) -> str:
    return str((conditions.ready(body.get("status") or {}) or {}).get("reason", ""))
