"""What a finished Job left behind, read before the Job or its pod can disappear.

The runner's JSON report (its termination message), the log tail of a failed run, the failed
rehearsal step, and the revision the tool's version table records: read once per finished run,
by the full pass that records it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from lockstep import constants, url_secrets, version_tables
from lockstep.controller import cluster_facts
from lockstep.controller.cache import Cache
from lockstep.controller.cluster import KubeApi
from lockstep.model import Spec
from lockstep.planning import runs
from lockstep.planning.facts import JobView, Observed, Outcome
from lockstep.tools import version_table

log = logging.getLogger("lockstep.reconcile")

REVISION_READ_TIMEOUT_SECONDS = 20.0
# The runner cuts revisions in its report to this length (lockstep.pod.run_request).
REPORTED_CHARS = 200


def unrecorded_finished_job(observed: Observed) -> JobView | None:
    """The newest Job (of either phase) of this spec that finished and is not in status yet.

    Only the newest Job of each phase counts: an older one was superseded by a later attempt,
    and recording it again would bring back an outdated result.
    """
    recorded = runs.recorded_jobs(observed.status)
    newest = runs.newest_per_phase(observed.jobs, observed.spec_hash)
    candidates = [j for j in newest if j.state != "Active" and j.name not in recorded]
    return max(candidates, key=_finish_order, default=None)


def _finish_order(job: JobView) -> tuple[float, int]:
    finished = job.finished_at.timestamp() if job.finished_at else 0.0
    return finished, int(job.phase == constants.PHASE_MIGRATE)


async def read_outcome(
    cache: Cache, api: KubeApi, namespace: str, spec: Spec, job: JobView, url: str
) -> Outcome:
    """The Outcome of the finished `job`: its report, log tail, failed step, applied revision."""
    planning_only = job.phase == constants.PHASE_PLAN
    container = constants.PLAN_CONTAINER if planning_only else constants.MIGRATE_CONTAINER
    pod = cache.pod_of_job(namespace, job.name)
    if not cluster_facts.container_terminated(pod, container):
        # The watch has not brought the pod's last state yet: ask the API server.
        pod = await asyncio.to_thread(api.job_pod, namespace, job.name)
    report = cluster_facts.runner_report(cluster_facts.termination_message(pod, container))
    succeeded = job.state == "Succeeded"
    log_tail = ""
    if not succeeded and pod is not None:
        log_tail = await _log_tail(api, namespace, pod, container)
    migrated = succeeded and not planning_only
    applied = None
    if migrated:
        trusted, reported = runner_revision(spec, report)
        applied = reported if trusted else await read_revision(spec, url)
    if migrated:
        await claim_after_run(spec, url)
    reason, message = _outcome_summary(report, job)
    rehearsal = None if succeeded else cluster_facts.failed_rehearsal_step(pod)
    if rehearsal is not None and pod is not None:
        reason, message = constants.Reason.REHEARSAL_FAILED, rehearsal.describe()
        log_tail = await _log_tail(api, namespace, pod, rehearsal.container)
    claim = None if succeeded else cluster_facts.failed_claim(pod)
    if claim is not None and pod is not None:  # refused before the tool started
        reason, message = claim
        log_tail = await _log_tail(api, namespace, pod, constants.CLAIM_CONTAINER)
    # The tool's own output (Flyway, Prisma, ...) may echo the URL: scrub before status/Events.
    return Outcome(
        job=job.name,
        succeeded=succeeded,
        reason=reason,
        message=url_secrets.scrub(message, url),
        log_tail=url_secrets.scrub(log_tail, url),
        from_revision=_optional(report.get("from")),
        to_revision=_optional(report.get("to")),
        applied_revision=applied,
        lock_wait_seconds=cluster_facts.lock_wait_seconds(pod),
        plan=cluster_facts.reported_plan(report),
    )


async def _log_tail(api: KubeApi, namespace: str, pod: Mapping[str, Any], container: str) -> str:
    return await asyncio.to_thread(
        api.read_log_tail, namespace, pod["metadata"]["name"], container, constants.LOG_TAIL_BYTES
    )


def runner_revision(spec: Spec, report: Mapping[str, Any]) -> tuple[bool, str | None]:
    """(True, revision) when Lockstep's own runner reported the revision the database is at.

    The built-in runner (SQL files, Alembic scripts in Lockstep's image) reads its version
    table after the run, under the migration lock, on the connection that migrated, and
    reports it as "to": the same table `read_revision` would read, without a new database
    connection (10-15 ms, the largest step between a Job's end and Ready). Tools in their own
    images, a report without "to", or one cut to length are read from the database instead.
    """
    if not spec.uses_built_in_runner or "to" not in report:
        return False, None
    value = report["to"]
    if value is None:
        return True, None
    if not isinstance(value, str) or (value.endswith("...") and len(value) >= REPORTED_CHARS):
        return False, None
    return True, _optional(value)


async def read_revision(spec: Spec, url: str) -> str | None:
    """The revision the tool's own version table records; None when it cannot be read here."""
    if spec.engine == "sqlite":
        return None  # the file lives in the Job's pod, not here
    try:
        return await asyncio.wait_for(
            asyncio.to_thread(
                version_tables.read_revision, spec.tool, url, *version_table.reader_table(spec)
            ),
            REVISION_READ_TIMEOUT_SECONDS,
        )
    except Exception as error:  # noqa: BLE001 - any failure falls back to the Job's report
        log.warning("could not read the version table: %s", type(error).__name__)
        return None


async def claim_after_run(spec: Spec, url: str) -> None:
    """Claim the version table of a tool in an image after its run (its first run could not:
    see :func:`lockstep.pod.history_owners.claim_url`). Best effort: the next run claims too."""
    if spec.uses_built_in_runner or not spec.owner or spec.engine == "sqlite":
        return
    table, _ = version_table.reader_table(spec)
    try:
        first = await asyncio.wait_for(
            asyncio.to_thread(version_tables.claim_after_run, url, spec.owner, spec.tool, table),
            REVISION_READ_TIMEOUT_SECONDS,
        )
    except Exception as error:  # noqa: BLE001 - the claim container of the next run claims too
        log.warning("could not claim the version table: %s", type(error).__name__)
        return
    if first not in (None, spec.owner):
        log.warning("%s: %s was claimed by %s already", spec.owner, table.shown(), first)


def _outcome_summary(report: Mapping[str, Any], job: JobView) -> tuple[str, str]:
    """Reason and message of a finished run: the runner's own words when it left a report."""
    if job.state == "Failed":
        return str(report.get("reason") or job.reason), str(report.get("message") or job.message)
    applied = [str(v) for v in report.get("applied") or []]
    baselined = _baselined(report)
    if report and not applied:
        return (
            constants.Reason.SUCCEEDED,
            f"{baselined}nothing to apply: the database was up to date",
        )
    if applied:
        more = int(report.get("appliedCount") or len(applied)) - len(applied)
        listed = ", ".join(applied) + (f" and {more} more" if more > 0 else "")
        verb = "reverted" if report.get("direction") == "down" else "applied"
        return constants.Reason.SUCCEEDED, f"{baselined}{verb} {listed}"
    return constants.Reason.SUCCEEDED, "the migration command succeeded"


def _optional(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


def _baselined(report: Mapping[str, Any]) -> str:
    """What spec.baseline recorded (not ran), so the status never says those files ran."""
    ends = [str(v) for v in report.get("baselined") or []]
    if not ends:
        return ""
    count = int(report.get("baselinedCount") or len(ends))
    return f"baselined {count} existing migration(s) up to {ends[-1]} (recorded, not run); "
