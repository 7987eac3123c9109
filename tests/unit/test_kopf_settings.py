"""The Kopf settings Lockstep starts with: each one is there for a measured reason."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import kopf

from lockstep import constants
from lockstep.controller import handlers, scope


def configured() -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    handlers.configure(settings)
    return settings


def test_no_diff_base_is_kept_per_object() -> None:
    storage = configured().persistence.diffbase_storage
    assert isinstance(storage, handlers._NoDiffBase)
    assert storage.fetch(body=kopf.Body({"metadata": {"name": "x"}})) is None


def test_events_are_lockstep_s_own_and_log_lines_are_not_events() -> None:
    settings = configured()
    assert settings.posting.reporting_component == constants.REPORTING_COMPONENT
    assert settings.posting.loggers is False


def test_listings_are_unpaged_and_idle_workers_do_not_linger() -> None:
    # 5 s idle workers (each holding its last body) set the peak RSS of a restart over a big
    # fleet (bench/fleet.py). Listings stay in one piece: a paged listing that outlives the API
    # server's compaction fails with 410 and Kopf's watcher takes the operator down with it.
    settings = configured()
    assert settings.watching.chunk_size is None
    assert settings.queueing.idle_timeout == handlers.WORKER_IDLE_SECONDS < 1.0


def test_kopf_keeps_no_record_per_object() -> None:
    memories = handlers.ForgetfulMemories()

    async def recall_twice() -> bool:
        body = kopf.RawBody({"metadata": {"uid": "u1", "name": "m", "namespace": "n"}})
        first = await memories.recall(body, noticed_by_listing=True)
        second = await memories.recall(body)
        return first is second

    assert asyncio.run(recall_twice()) is False
    assert list(memories.iter_all_memories()) == []


def test_passes_and_timers_run_without_the_handler_call_s_cause() -> None:
    # asyncio copies the caller's context into tasks and timers; a handler's context holds the
    # Kopf cause (and the whole body): a resync timer per migration kept one alive each.
    from kopf._core.actions import execution

    from lockstep.controller.scheduler import Scheduler

    seen: list[object] = []

    async def run_pass(key: tuple[str, str], full: bool) -> None:
        seen.append(execution.cause_var.get("unset"))

    async def main() -> None:
        scheduler = Scheduler(run_pass)
        handlers.reconciler.scheduler, saved = scheduler, handlers.reconciler.scheduler
        try:
            execution.cause_var.set(cast(Any, "a cause with a body"))
            handlers._lean_context()
            scheduler.trigger(("ns", "a"))
            scheduler.requeue(("ns", "b"), 0.0, at_least=0.0)
            await asyncio.sleep(0.05)
        finally:
            handlers.reconciler.scheduler = saved

    asyncio.run(main())
    assert seen == [None, None]


def test_events_can_still_be_posted_from_passes_and_timers() -> None:
    # The lean context keeps Kopf's operator-wide variables: kopf.event() from a pass reaches
    # the queue Kopf's poster reads, as it did when passes ran in the handler's context.
    from kopf._core.engines import posting

    from lockstep.controller.scheduler import Scheduler

    posted: list[str] = []

    async def run_pass(key: tuple[str, str], full: bool) -> None:
        body = kopf.Body(kopf.RawBody({"metadata": {"name": key[1], "namespace": key[0]}}))
        kopf.event(body, type="Normal", reason="Checked", message=key[1])

    async def main() -> None:
        queue: asyncio.Queue[Any] = asyncio.Queue()
        posting.settings_var.set(kopf.OperatorSettings())
        posting.event_queue_var.set(queue)
        posting.event_queue_loop_var.set(asyncio.get_running_loop())
        scheduler = Scheduler(run_pass)
        handlers.reconciler.scheduler, saved = scheduler, handlers.reconciler.scheduler
        try:
            handlers._lean_context()
            scheduler.requeue(("ns", "timer"), 0.0, at_least=0.0)
            scheduler.trigger(("ns", "task"))
            await asyncio.sleep(0.05)
        finally:
            handlers.reconciler.scheduler = saved
        while not queue.empty():
            posted.append(queue.get_nowait().message)

    asyncio.run(main())
    assert sorted(posted) == ["task", "timer"]


def test_the_api_server_sends_only_lockstep_s_jobs_of_this_shard() -> None:
    """Server-side: other Jobs of the cluster, and other shards' Jobs, never reach the instance.
    Pods stay unfiltered server-side (the gate's application pods); the handlers drop other
    shards' Job pods (ADR 0020)."""
    from kopf._cogs.structs import references

    jobs = references.Resource("batch", "v1", "jobs", namespaced=True)
    pods = references.Resource("", "v1", "pods", namespaced=True)
    try:
        handlers.scope_to(scope.parse("shard in (a,b),!legacy"))
        settings = configured()
        assert list(settings.watching.label_selectors.collect(jobs)) == [
            "app.kubernetes.io/managed-by=lockstep,shard in (a,b),!legacy"
        ]
        assert list(settings.watching.label_selectors.collect(pods)) == []
        assert handlers._own_pod(labels={"shard": "a"}, namespace="n", name="p")
        assert not handlers._own_pod(labels={"shard": "c"}, namespace="n", name="p")
    finally:
        handlers.scope_to(scope.EVERYTHING)
    assert list(configured().watching.label_selectors.collect(jobs)) == [
        "app.kubernetes.io/managed-by=lockstep"
    ]
