"""The controller's small parts on their own: status times, the scheduler, the watch routing."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from lockstep import timestamps
from lockstep.controller import watches
from lockstep.controller.cache import Cache, Key
from lockstep.controller.reconcile import Reconciler
from lockstep.controller.scheduler import Scheduler


def test_status_times_round_trip() -> None:
    moment = datetime(2026, 11, 29, 12, 0, 5, tzinfo=UTC)
    assert timestamps.isoformat(moment) == "2026-11-29T12:00:05Z"
    assert timestamps.parse("2026-11-29T12:00:05Z") == moment
    assert timestamps.parse(moment) is moment
    assert timestamps.parse("") is None and timestamps.parse(None) is None


def test_triggers_coalesce_into_one_running_pass_and_one_queued() -> None:
    passes: list[tuple[Key, bool]] = []

    started = asyncio.Event()

    async def run_pass(key: Key, full: bool) -> None:
        passes.append((key, full))
        started.set()
        await asyncio.sleep(0.01)

    async def main() -> None:
        scheduler = Scheduler(run_pass)
        scheduler.trigger(("ns", "a"), full=True)
        scheduler.trigger(("ns", "a"))  # before the pass starts: the same pass
        await started.wait()
        for _ in range(5):  # while it runs: one more pass, queued
            scheduler.trigger(("ns", "a"))
        await asyncio.sleep(0.05)

    asyncio.run(main())
    assert passes == [(("ns", "a"), True), (("ns", "a"), False)]


def test_passes_beyond_the_limit_wait_in_order_and_each_runs_once() -> None:
    passes: list[tuple[Key, bool]] = []
    running: list[int] = []
    now_running = 0

    async def run_pass(key: Key, full: bool) -> None:
        nonlocal now_running
        now_running += 1
        running.append(now_running)
        passes.append((key, full))
        await asyncio.sleep(0.01)
        now_running -= 1

    async def main() -> Scheduler:
        scheduler = Scheduler(run_pass, max_running=2)
        for name in "abcd":
            scheduler.trigger(("ns", name), full=name == "c")
        scheduler.trigger(("ns", "c"))  # already waiting: still one pass, still full
        await asyncio.sleep(0)  # a and b start
        scheduler.trigger(("ns", "a"))  # while it runs: one more pass, behind those waiting
        await asyncio.sleep(0.1)
        return scheduler

    scheduler = asyncio.run(main())
    assert max(running) == 2
    assert passes == [
        (("ns", "a"), False),
        (("ns", "b"), False),
        (("ns", "c"), True),
        (("ns", "d"), False),
        (("ns", "a"), False),
    ]
    assert not scheduler._waiting and not scheduler._running


def test_a_resync_never_replaces_an_earlier_planned_look() -> None:
    async def run_pass(key: Key, full: bool) -> None:
        return None

    async def main() -> tuple[float, float]:
        scheduler = Scheduler(run_pass)
        scheduler.requeue(("ns", "a"), 5.0)
        first = scheduler.planned()[("ns", "a")]
        scheduler.resync(("ns", "a"), 600.0)
        second = scheduler.planned()[("ns", "a")]
        scheduler.forget_all()
        return first, second

    first, second = asyncio.run(main())
    assert first == second


def test_a_migration_event_caches_the_body_and_a_first_sight_asks_for_a_full_pass() -> None:
    triggered: list[tuple[Key, bool]] = []
    reconciler = Reconciler(cache=Cache(), emit=lambda *_: None)
    reconciler.trigger = lambda key, full=False: triggered.append((key, full))  # type: ignore[method-assign]
    body: dict[str, Any] = {"metadata": {"namespace": "ns", "name": "a"}, "spec": {}}
    watches.migration_event(reconciler, "ADDED", body)
    watches.migration_event(reconciler, "MODIFIED", body)
    assert reconciler.cache.migration(("ns", "a")) == body
    assert triggered == [(("ns", "a"), True), (("ns", "a"), False)]
    watches.migration_event(reconciler, "DELETED", body)
    assert reconciler.cache.migration(("ns", "a")) is None
