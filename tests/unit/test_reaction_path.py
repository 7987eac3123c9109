"""The reaction path of issue 21: what a migration costs between its creation and Ready.

Creating a Job reads the ConfigMap and the Secret; recording the Job's end does not read them
again (the run is recorded with the inputs it was created with) and opens no database
connection when Lockstep's own runner reported the revision; the status is written once at
creation (with activeJob.startedAt) and once at the end; a lock sidecar still passing its first
probe is not reported as waiting.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any, cast

import pytest
from test_reconcile import NOW, FakeApi, conditions_of, migration

from lockstep import constants, timestamps
from lockstep.controller import outcome, reconcile
from lockstep.controller.cache import Cache
from lockstep.model import parse_spec
from lockstep.planning import chain, facts
from lockstep.planning.facts import Event
from lockstep.pod import run_request
from lockstep.status import MigrationStatus

KEY = ("shop", "shop")
REPORT = {"result": "Succeeded", "tool": "sql", "from": None, "to": "1", "applied": ["1"]}


class Bed:
    """One Reconciler kept across passes (as in the operator), a cache the test feeds."""

    def __init__(self, api: FakeApi) -> None:
        self.api = api
        self.cache = Cache()
        self.events: list[Event] = []
        self.reconciler = reconcile.Reconciler(
            cache=self.cache,
            emit=lambda _, e: self.events.append(e),
            clock=lambda: NOW,
            api=api,
        )

    def put(self, body: dict[str, Any]) -> None:
        self.cache.put_migration(body)

    def run(self, full: bool) -> None:
        async def once() -> None:
            await self.reconciler.reconcile_once(KEY, full=full)
            self.reconciler.scheduler.forget_all()

        asyncio.run(once())

    def finish_job(self, report: dict[str, Any]) -> None:
        """The Job succeeded and its pod's migrate container left `report` (the watch saw both)."""
        (job,) = self.api.jobs.values()
        name = job["metadata"]["name"]
        done = timestamps.isoformat(NOW)
        job = {**job, "status": {"conditions": [{"type": "Complete", "status": "True"}]}}
        job["status"]["completionTime"] = done
        self.cache.put_job(job)
        terminated = {"exitCode": 0, "message": json.dumps(report)}
        self.cache.put_pod(
            {
                "metadata": {
                    "name": f"{name}-pod",
                    "namespace": "shop",
                    "labels": {"job-name": name, constants.LABEL_MIGRATION: "shop"},
                },
                "status": {
                    "containerStatuses": [
                        {"name": constants.MIGRATE_CONTAINER, "state": {"terminated": terminated}}
                    ]
                },
            }
        )


@pytest.fixture
def no_database(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records version-table reads instead of connecting (the test URL names no database)."""
    reads: list[str] = []

    async def read_revision(spec: Any, url: str) -> str | None:
        reads.append(url)
        return "1"

    monkeypatch.setattr(outcome, "read_revision", read_revision)
    return reads


def created(bed: Bed) -> dict[str, Any]:
    """Create the migration's Job (first sight: a full pass); return the status written."""
    bed.put(migration())
    bed.run(full=True)
    assert len(bed.api.jobs) == 1
    (written,) = bed.api.patches
    bed.put(migration(**written))
    return written


def test_creation_reads_the_inputs_and_writes_started_at_with_the_job(
    no_database: list[str],
) -> None:
    bed = Bed(FakeApi())
    written = created(bed)
    assert sorted(bed.api.reads) == ["ConfigMap shop-migrations", "Secret shop-db"]
    assert written["activeJob"]["startedAt"] == timestamps.isoformat(NOW)


def test_the_job_end_is_recorded_without_reads_or_a_database_connection(
    no_database: list[str],
) -> None:
    bed = Bed(FakeApi())
    created(bed)
    bed.api.reads.clear()
    bed.api.patches.clear()
    bed.finish_job(REPORT)
    bed.run(full=False)  # the Job's watch event
    assert bed.api.reads == []
    assert no_database == []
    (patch,) = bed.api.patches
    assert conditions_of(patch)["Ready"]["status"] == "True"
    assert patch["appliedRevision"] == "1"
    assert patch["activeJob"] is None
    assert [e.reason for e in bed.events] == ["JobCreated", "Succeeded"]


def test_a_resync_or_an_edited_spec_reads_the_inputs_again(no_database: list[str]) -> None:
    bed = Bed(FakeApi())
    written = created(bed)
    bed.api.reads.clear()
    bed.run(full=True)  # the resync timer
    assert sorted(bed.api.reads) == ["ConfigMap shop-migrations", "Secret shop-db"]
    bed.api.reads.clear()
    edited = migration(**written)
    edited["metadata"]["generation"] = 2
    bed.put(edited)
    bed.finish_job(REPORT)
    bed.run(full=False)
    assert sorted(bed.api.reads) == ["ConfigMap shop-migrations", "Secret shop-db"]


def test_a_retry_request_reads_the_inputs_again(no_database: list[str]) -> None:
    """The user fixed the Secret and asked for a retry: the remembered URL must not be used."""
    bed = Bed(FakeApi())
    written = created(bed)
    bed.api.reads.clear()
    retried = migration(**written)
    retried["metadata"]["annotations"] = {constants.ANNOTATION_RETRY: "fixed-the-secret"}
    bed.put(retried)
    bed.finish_job(REPORT)
    bed.run(full=False)
    assert "Secret shop-db" in bed.api.reads


def test_a_report_without_the_revision_falls_back_to_the_version_table(
    no_database: list[str],
) -> None:
    bed = Bed(FakeApi())
    created(bed)
    bed.finish_job({"result": "Succeeded", "tool": "sql"})
    bed.run(full=False)
    assert len(no_database) == 1
    assert bed.api.patches[-1]["appliedRevision"] == "1"


BUILT_IN = parse_spec(
    {
        "tool": "sql",
        "source": {"configMapRef": {"name": "m"}},
        "database": {"engine": "postgresql", "urlSecretRef": {"name": "db", "key": "url"}},
    }
)
IN_IMAGE = parse_spec(
    {
        "tool": "flyway",
        "image": "flyway/flyway",
        "database": {"engine": "postgresql", "urlSecretRef": {"name": "db", "key": "url"}},
    }
)


@pytest.mark.parametrize(
    ("spec", "report", "expected"),
    [
        (BUILT_IN, {"to": "3"}, (True, "3")),
        (BUILT_IN, {"to": None}, (True, None)),  # an empty database: no revision
        (BUILT_IN, {}, (False, None)),  # no report (termination message lost): read it
        (BUILT_IN, {"to": "x" * 197 + "..."}, (False, None)),  # cut to length: read it
        (IN_IMAGE, {"to": "3"}, (False, None)),  # another tool's words: read the table
    ],
)
def test_which_reported_revisions_are_trusted(
    spec: Any, report: dict[str, Any], expected: tuple[bool, str | None]
) -> None:
    assert outcome.runner_revision(spec, report) == expected


def test_the_cut_length_is_the_runners() -> None:
    assert outcome.REPORTED_CHARS == run_request._REVISION_CHARS


def running(
    waited: float | None,
    status: dict[str, Any] | None = None,
    phase: str = constants.PHASE_MIGRATE,
) -> Any:
    spec = parse_spec(BUILT_IN_SPEC)
    job = facts.JobView(
        name="shop-a1b2c3d4", spec_hash="a1b2c3d4", attempt=1, state="Active", phase=phase
    )
    wait = None
    if waited is not None:
        wait = facts.LockWait(job=job.name, since=NOW - timedelta(seconds=waited), timed_out=False)
    return chain.plan(
        facts.Observed(
            name="shop",
            generation=1,
            spec=spec,
            spec_hash="a1b2c3d4e5",
            status=cast(MigrationStatus, status or {"specHash": "a1b2c3d4e5"}),
            now=NOW,
            jobs=(job,),
            lock_wait=wait,
        )
    )


BUILT_IN_SPEC = {
    "tool": "sql",
    "source": {"configMapRef": {"name": "m"}},
    "database": {"engine": "postgresql", "urlSecretRef": {"name": "db", "key": "url"}},
}


def reconciling(decision: Any) -> str:
    return str(conditions_of(decision.status)["Reconciling"]["reason"])


def test_a_sidecar_in_its_first_probe_periods_is_not_shown_waiting() -> None:
    decision = running(waited=0.8)
    assert reconciling(decision) == "JobRunning"
    # Looked at again when it would count as waiting: 10 s after the sidecar started.
    assert decision.requeue_after == pytest.approx(chain.LOCK_WAIT_SHOWN_AFTER_SECONDS - 0.8)


def test_a_short_wait_keeps_what_the_job_does_in_the_status() -> None:
    """Within the grace the status says what the Job does, for every phase (here: planning)."""
    decision = running(waited=0.8, phase=constants.PHASE_PLAN)
    assert reconciling(decision) == "Planning"
    assert decision.requeue_after is not None


def test_a_sidecar_that_outwaits_its_probe_shows_waiting_for_lock() -> None:
    decision = running(waited=chain.LOCK_WAIT_SHOWN_AFTER_SECONDS + 0.1)
    assert reconciling(decision) == "WaitingForLock"


def test_the_started_at_written_at_creation_is_kept_while_the_job_runs() -> None:
    created_at = timestamps.isoformat(NOW - timedelta(seconds=5))
    status = {
        "specHash": "a1b2c3d4e5",
        "activeJob": {"name": "shop-a1b2c3d4", "attempt": 1, "startedAt": created_at},
    }
    decision = running(waited=None, status=status)
    assert decision.status["activeJob"]["startedAt"] == created_at


def test_a_read_free_pass_asks_for_a_read_free_look_again() -> None:
    """The lock-wait re-check comes from a pass that read nothing: its timer reads nothing."""
    bed = Bed(FakeApi())
    written = created(bed)
    (job,) = bed.api.jobs.values()
    name = job["metadata"]["name"]
    bed.cache.put_job(job)
    started = timestamps.isoformat(NOW - timedelta(seconds=1))
    lock = {"running": {"startedAt": started}}
    bed.cache.put_pod(
        {
            "metadata": {"name": f"{name}-pod", "namespace": "shop", "labels": {"job-name": name}},
            "status": {
                "initContainerStatuses": [
                    {"name": constants.LOCK_CONTAINER, "state": lock, "started": False}
                ]
            },
        }
    )
    bed.put(migration(**written))
    fired: list[tuple[float, bool]] = []
    scheduler = bed.reconciler.scheduler
    scheduler.requeue = lambda key, delay, full=True: fired.append((delay, full))  # type: ignore[method-assign]
    bed.api.reads.clear()
    bed.run(full=False)
    assert bed.api.reads == []
    ((delay, full),) = fired
    assert delay == pytest.approx(chain.LOCK_WAIT_SHOWN_AFTER_SECONDS - 1.0)
    assert full is False
