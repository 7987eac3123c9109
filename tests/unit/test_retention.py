"""Bounded history: finished Jobs beyond the newest N go, and deleting one never makes the
operator run a migration again, reuse a recorded Job's name or change a truthful status."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from fake_kube_api import FakeKubeApi
from lockstep import constants, timestamps
from lockstep.controller import reconcile, retention
from lockstep.controller.cache import Cache
from lockstep.jobs import naming
from lockstep.planning.facts import JobView

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
KEY = ("shop", "shop")


class FakeApi(FakeKubeApi):
    """The shop's Secret and ConfigMap (a SQLite URL: no version table is read)."""

    def __init__(self) -> None:
        super().__init__(
            secrets={("shop", "shop-db"): {"url": "sqlite:////var/lib/shop/shop.sqlite"}},
            config_maps={("shop", "shop-migrations"): {"V1__init.sql": "create table t (id int);"}},
            log_tail="boom",
        )


class World:
    """A migration, the cache the watches would keep, and passes at a settable time."""

    def __init__(self, keep: int = 1, retry_limit: int = 3) -> None:
        self.api = FakeApi()
        self.cache = Cache()
        self.now = NOW
        self.cache.put_migration(
            {
                "apiVersion": "lockstep.dev/v1alpha1",
                "kind": "DatabaseMigration",
                "metadata": {"name": "shop", "namespace": "shop", "uid": "u-1", "generation": 1},
                "spec": {
                    "tool": "sql",
                    "source": {"configMapRef": {"name": "shop-migrations"}},
                    "database": {
                        "engine": "sqlite",
                        "urlSecretRef": {"name": "shop-db", "key": "url"},
                    },
                    "retry": {"limit": retry_limit, "backoffSeconds": 10},
                },
                "status": {},
            }
        )
        self.reconciler = reconcile.Reconciler(
            cache=self.cache,
            emit=lambda *_: None,
            clock=lambda: self.now,
            api=self.api,
            keep_finished_jobs=keep,
        )

    def run(self, full: bool = True) -> None:
        async def once() -> None:
            await self.reconciler.reconcile_once(KEY, full=full)
            self.reconciler.scheduler.forget_all()

        asyncio.run(once())

    @property
    def status(self) -> dict[str, Any]:
        body = self.cache.migration(KEY)
        assert body is not None
        return dict(body["status"])

    def finish(self, name: str, succeeded: bool = True, *, at: datetime | None = None) -> None:
        """What the Job watch brings when the Job controller marks the Job finished."""
        finished = timestamps.isoformat(at or self.now)
        job = self.api.jobs.get(name) or self.cache.job(("shop", name))
        assert job is not None, name
        condition = "Complete" if succeeded else "Failed"
        status = {
            "startTime": timestamps.isoformat((at or self.now) - timedelta(seconds=5)),
            "conditions": [{"type": condition, "status": "True", "lastTransitionTime": finished}],
        }
        if succeeded:
            status["completionTime"] = finished
        self.cache.put_job({**job, "status": status})

    def old_release(self, spec_hash: str, finished: datetime) -> str:
        """A finished Job of an earlier spec, as an earlier release left it."""
        name = naming.job_name("shop", spec_hash, 0)
        owner = naming.Owner("shop", "shop", "u-1")
        labels = {
            **naming.job_labels(owner, spec_hash, "sqlite:/var/lib/shop/shop.sqlite"),
            constants.LABEL_ATTEMPT: "0",
            constants.LABEL_PHASE: constants.PHASE_MIGRATE,
        }
        job = {"metadata": {"name": name, "namespace": "shop", "labels": labels}}
        self.api.jobs[name] = job
        self.cache.put_job(job)
        self.finish(name, at=finished)
        return name

    def cached_jobs(self) -> list[str]:
        return sorted(j["metadata"]["name"] for j in self.cache.jobs_of(KEY))


def test_a_recorded_finished_job_deleted_changes_nothing() -> None:
    world = World(keep=1)
    world.run()
    (first,) = world.api.created
    world.now += timedelta(seconds=30)
    world.finish(first)
    world.run()
    ready = world.status
    assert ready["lastRun"]["job"] == first and ready["lastRun"]["result"] == "Succeeded"
    assert world.api.deleted == []  # the newest finished Job stays (keep=1)
    patches = len(world.api.patches)
    # The Job goes (kubectl delete, or a retention elsewhere); the watch drops it.
    world.api.jobs.pop(first)
    world.cache.drop_job(("shop", first))
    for full in (False, True, False):
        world.now += timedelta(minutes=10)
        world.run(full=full)
    assert world.api.created == [first], "a deleted finished Job must not make a new run"
    assert len(world.api.patches) == patches, "status was true before and must stay unchanged"
    assert world.status == ready


def test_a_running_job_the_cache_has_not_listed_yet_is_asked_for_again_not_retried() -> None:
    """A new leader whose Job watch has not listed the running Job: the 409 adopts it."""
    world = World(keep=1)
    world.run()
    (first,) = world.api.created
    assert world.status["activeJob"]["name"] == first
    world.cache.drop_job(("shop", first))  # still running; this process has not seen it yet
    world.now += timedelta(seconds=5)
    world.run()
    assert world.api.created == [first], "no second Job (no -r1) while the first may still run"
    assert set(world.api.jobs) == {first}


def test_old_releases_beyond_the_newest_are_deleted_after_status_records_the_run() -> None:
    world = World(keep=1)
    old = [world.old_release(f"{i:08x}" + "0" * 56, NOW - timedelta(days=10 - i)) for i in range(4)]
    runs = [
        {
            "job": name,
            "result": "Succeeded",
            "finishedAt": timestamps.isoformat(NOW - timedelta(days=10 - i)),
        }
        for i, name in enumerate(old)
    ]
    world.cache.update_status(KEY, {"lastRun": runs[-1], "history": runs[::-1]})
    world.run()
    assert world.api.deleted == old[:3], "all but the newest finished Job go"
    (current,) = world.api.created
    world.now += timedelta(seconds=30)
    world.finish(current)
    world.run()
    assert world.api.deleted == old, "the newest old release goes once the new run is recorded"
    assert world.cached_jobs() == [current]
    assert world.status["lastRun"]["job"] == current


def test_a_retry_after_its_failed_job_was_deleted_gets_a_new_name_and_is_recorded() -> None:
    world = World(keep=0)
    world.run()
    (first,) = world.api.created
    world.now += timedelta(seconds=30)
    world.finish(first, succeeded=False)
    world.run()
    assert world.status["failures"] == 1 and world.status["lastRun"]["job"] == first
    assert world.api.deleted == [first]  # keep=0: status holds its record and log tail
    world.now += timedelta(minutes=5)  # past nextRetryAt
    world.run()
    assert world.api.created == [first, f"{first}-r1"], "never the recorded name again"
    world.now += timedelta(seconds=30)
    world.finish(f"{first}-r1")
    world.run()
    status = world.status
    assert status["lastRun"]["job"] == f"{first}-r1" and status["lastRun"]["result"] == "Succeeded"
    assert status["failures"] == 0 and [r["job"] for r in status["history"]] == [
        f"{first}-r1",
        first,
    ]


def test_keep_minus_one_keeps_everything() -> None:
    world = World(keep=-1)
    world.old_release("1" * 64, NOW - timedelta(days=2))
    world.old_release("2" * 64, NOW - timedelta(days=1))
    world.run()
    assert world.api.deleted == []


def view(name: str, spec_hash: str, attempt: int, finished_minutes: int | None,
         phase: str = constants.PHASE_MIGRATE) -> JobView:  # fmt: skip
    finished = None if finished_minutes is None else NOW + timedelta(minutes=finished_minutes)
    return JobView(
        name=name,
        spec_hash=spec_hash,
        attempt=attempt,
        downgrade=False,
        phase=phase,
        state="Active" if finished is None else "Succeeded",
        started_at=NOW,
        finished_at=finished,
        reason="",
        message="",
    )


def test_unrecorded_outcomes_and_active_jobs_are_never_deleted() -> None:
    current = "c" * 64
    status = {
        "lastRun": {"job": "m-recorded", "finishedAt": timestamps.isoformat(NOW)},
        "plan": {"job": "m-plan"},
    }
    jobs = [
        view("m-active", "aaaaaaaa", 0, None),
        view("m-recorded", "bbbbbbbb", 0, 0),
        view("m-plan", current[:8], 0, -5, constants.PHASE_PLAN),
        view("m-older-spec", "dddddddd", 0, -10),  # finished before lastRun: superseded
        view("m-later-spec", "eeeeeeee", 0, 5),  # finished after the last record: kept
        view("m-current", current[:8], 0, -20),  # unrecorded newest of its phase: kept
    ]
    assert retention.jobs_to_delete(status, jobs, current, 0) == [
        "m-older-spec",
        "m-plan",
        "m-recorded",
    ]
    assert retention.jobs_to_delete(status, jobs, current, 2) == ["m-older-spec", "m-plan"]
    assert retention.jobs_to_delete({}, jobs, current, 0) == []


def test_attempt_numbers_in_job_names() -> None:
    spec_hash = "0123456789abcdef" * 4
    for attempt in (0, 1, 12):
        for phase in (constants.PHASE_MIGRATE, constants.PHASE_PLAN):
            name = naming.job_name("shop-db", spec_hash, attempt, phase)
            assert naming.attempt_of(name, "shop-db", spec_hash, phase) == attempt
    other = naming.job_name("shop-db", "f" * 64, 3)
    assert naming.attempt_of(other, "shop-db", spec_hash, constants.PHASE_MIGRATE) is None
    plan = naming.job_name("shop-db", spec_hash, 2, constants.PHASE_PLAN)
    assert naming.attempt_of(plan, "shop-db", spec_hash, constants.PHASE_MIGRATE) is None
    assert naming.attempt_of(plan + "x", "shop-db", spec_hash, constants.PHASE_PLAN) is None


def test_a_deleted_job_brought_back_by_a_lagging_event_is_not_deleted_again() -> None:
    world = World(keep=1)
    old = [world.old_release(f"{i:08x}" + "0" * 56, NOW - timedelta(days=10 - i)) for i in range(3)]
    for name in old:  # as the API server sends them: each with its uid
        job = world.cache.job(("shop", name))
        assert job is not None
        world.cache.put_job({**job, "metadata": {**job["metadata"], "uid": f"uid-{name}"}})
    as_listed = {name: world.cache.job(("shop", name)) for name in old}
    runs = [
        {"job": name, "result": "Succeeded", "finishedAt": timestamps.isoformat(NOW)}
        for name in old
    ]
    world.cache.update_status(KEY, {"lastRun": runs[-1], "history": runs[::-1]})
    world.run()
    assert world.api.deleted == old[:2]
    for name in old[:2]:  # a lagging watch delivers events from before the deletion
        world.cache.put_job(as_listed[name] or {})
    world.run()
    assert world.api.deleted == old[:2], "no second DELETE of a Job already deleted"
