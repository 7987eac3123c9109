"""Compacting the cache: copies equal to what they replace, churn decides when, events go on."""

from __future__ import annotations

import asyncio
import json

from lockstep.controller import memory
from lockstep.controller.cache import Cache, key_of


def job(i: int) -> dict[str, object]:
    body = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": f"m-{i}-abc",
            "namespace": "shop",
            "labels": {"lockstep.dev/migration": f"m-{i}", "lockstep.dev/database": "db"},
        },
        "status": {"conditions": [{"type": "Complete", "status": "True"}]},
    }
    return json.loads(json.dumps(body))  # type: ignore[no-any-return]


def filled(n: int) -> Cache:
    cache = Cache()
    for i in range(n):
        cache.put_job(job(i))
    return cache


def test_compacting_keeps_every_body_equal_but_new() -> None:
    cache = filled(1200)
    before = {key_of(job(i)): cache.job(key_of(job(i))) for i in range(1200)}
    pauses = sum(1 for _ in cache.compacting(batch=500))
    assert pauses == 2  # after 500 and 1,000 copies: a caller can let events run between
    for key, old in before.items():
        new = cache.job(key)
        assert new == old
        assert new is not old
    assert cache.jobs_of(("shop", "m-7")) == [cache.job(("shop", "m-7-abc"))]


def test_a_body_dropped_or_replaced_while_compacting_is_not_brought_back() -> None:
    cache = filled(1001)
    steps = cache.compacting(batch=500)
    next(steps)  # 500 copied
    cache.drop_job(("shop", "m-900-abc"))
    replaced = job(901)
    replaced["status"] = {"startTime": "now"}
    cache.put_job(replaced)
    list(steps)
    assert cache.job(("shop", "m-900-abc")) is None
    assert cache.job(("shop", "m-901-abc"))["status"] == {"startTime": "now"}


def test_churn_counts_puts_and_drops_against_the_cache_size() -> None:
    cache = filled(10)
    cache.drop_job(("shop", "m-1-abc"))
    assert cache.changes == 11
    assert len(cache) == 9
    assert not memory.churned(999, 0)
    assert memory.churned(1000, 0)
    assert not memory.churned(4999, 10_000)
    assert memory.churned(5000, 10_000)
    assert memory.settled(5000, 99, 10_000)
    assert not memory.settled(5000, 100, 10_000)  # still busy: later
    assert not memory.settled(4999, 0, 10_000)


def test_keep_compact_compacts_only_after_churn_and_gives_memory_back() -> None:
    cache = filled(10)
    trims: list[int] = []

    async def scenario() -> None:
        original = memory._malloc_trim
        memory._malloc_trim = lambda: lambda: trims.append(1)  # type: ignore[assignment]
        try:
            task = asyncio.create_task(memory.keep_compact(cache, check_seconds=0.01))
            await asyncio.sleep(0.05)
            assert trims == []  # 10 changes since start: below MIN_CHURN
            for i in range(memory.MIN_CHURN):
                cache.put_job(job(i % 10))
            await asyncio.sleep(0.05)
            assert trims == [1]  # compacted once the burst was over, then quiet again
            task.cancel()
        finally:
            memory._malloc_trim = original  # type: ignore[assignment]

    asyncio.run(scenario())


def test_malloc_trim_is_callable_here() -> None:
    memory._malloc_trim()()  # glibc here; a no-op where the C library has no malloc_trim
