"""Bounded history: finished Jobs of a migration beyond the newest N are deleted.

Job names derive from the spec hash, and before this nothing deleted a finished Job, so every
release left a Job and its pod behind: the cache, its scans and the API server's etcd grew with
release history, not with live migrations. Status keeps the history (lastRun, history, plan);
Jobs are only kept for `kubectl logs`.

Deleting must never change what the planner decides, so only Jobs the planner no longer needs go:
a finished Job whose outcome status records (its name in lastRun, history or plan), or one that
finished before the recorded lastRun and is not a candidate for recording (the newest Job of a
phase of the current spec; `outcome.unrecorded_finished_job` reads those). Active Jobs and
unrecorded outcomes are never touched. The attempt numbers of later runs come from status too
(`planning.runs.next_attempt`), so a deleted Job's name is never reused for a new run.

`ttlSecondsAfterFinished` is not used on purpose: the Job controller would delete a Job whose
outcome the operator has not recorded yet (an operator that was down longer than the TTL), and
the run's result would be lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from lockstep import constants, timestamps
from lockstep.controller import cluster_facts
from lockstep.controller.cache import Cache, Key
from lockstep.controller.cluster import KubeApi
from lockstep.planning import runs
from lockstep.planning.facts import JobView

log = logging.getLogger("lockstep.reconcile")

DEFAULT_KEEP_FINISHED_JOBS = constants.DEFAULT_KEEP_FINISHED_JOBS


def jobs_to_delete(
    status: Mapping[str, Any], jobs: list[JobView], spec_hash: str, keep: int
) -> list[str]:
    """The finished Jobs beyond the newest `keep` that status no longer needs (oldest first)."""
    finished = sorted((j for j in jobs if j.state != "Active"), key=_finish_order, reverse=True)
    recorded = runs.recorded_jobs(status)
    last_finished = timestamps.parse((status.get("lastRun") or {}).get("finishedAt"))
    protected = _recording_candidates(jobs, spec_hash)
    doomed = [
        job.name
        for job in finished[max(keep, 0) :]
        if job.name in recorded or (job.name not in protected and _finished_by(job, last_finished))
    ]
    return list(reversed(doomed))


def _recording_candidates(jobs: list[JobView], spec_hash: str) -> set[str]:
    """The newest Job of each phase of the current spec: the ones an outcome is read from."""
    return {j.name for j in runs.newest_per_phase(jobs, spec_hash)} if spec_hash else set()


def _finished_by(job: JobView, moment: datetime | None) -> bool:
    return moment is not None and job.finished_at is not None and job.finished_at <= moment


def _finish_order(job: JobView) -> tuple[float, str]:
    return (job.finished_at.timestamp() if job.finished_at else 0.0), job.name


@dataclass
class Retention:
    """Deletes what `jobs_to_delete` names after a pass whose status write went through."""

    cache: Cache
    api: KubeApi
    keep_finished: int = DEFAULT_KEEP_FINISHED_JOBS

    async def prune(self, key: Key) -> list[str]:
        if self.keep_finished < 0:
            return []  # retention off (--keep-finished-jobs -1)
        body = self.cache.migration(key)
        if body is None:
            return []
        status = body.get("status") or {}
        jobs = [cluster_facts.job_view(j) for j in self.cache.jobs_of(key)]
        doomed = jobs_to_delete(status, jobs, str(status.get("specHash") or ""), self.keep_finished)
        namespace = key[0]
        for name in doomed:
            await asyncio.to_thread(self.api.delete_job, namespace, name)
            # Gone for planning now, and kept out of the cache until the watch's DELETED event.
            self.cache.job_deleted((namespace, name))
        if doomed:
            log.info(
                "deleted %d finished job(s) beyond the newest %d: %s",
                len(doomed),
                self.keep_finished,
                ", ".join(doomed),
                extra={"namespace": namespace, "migration": key[1]},
            )
        return doomed
