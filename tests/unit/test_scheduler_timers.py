"""The scheduler's requeue timers: one heap behind one loop timer, with what a timer per key
promised: each key fires once, at its latest requeue, in time order; `forget` cancels."""

from __future__ import annotations

import asyncio

from lockstep.controller.cache import Key
from lockstep.controller.scheduler import Scheduler


def run(
    scenario: list[tuple[str, float]], forget: tuple[str, ...] = (), wait: float = 0.3
) -> list[tuple[str, bool]]:
    fired: list[tuple[str, bool]] = []

    async def run_pass(key: Key, full: bool) -> None:
        fired.append((key[1], full))

    async def main() -> None:
        scheduler = Scheduler(run_pass)
        for name, delay in scenario:
            scheduler.requeue(("ns", name), delay, full=name.startswith("full"), at_least=0.0)
        for name in forget:
            scheduler.forget(("ns", name))
        await asyncio.sleep(wait)
        assert scheduler.planned() == {}
        scheduler.forget_all()

    asyncio.run(main())
    return fired


def test_timers_fire_in_time_order_with_their_full_flag() -> None:
    assert run([("c", 0.12), ("a", 0.02), ("full-b", 0.06)]) == [
        ("a", False),
        ("full-b", True),
        ("c", False),
    ]


def test_a_requeue_replaces_the_key_s_earlier_or_later_timer() -> None:
    # "a" moved later past "b", then "b" moved earlier: each fires once, at its last time.
    assert run([("a", 0.02), ("b", 0.1), ("a", 0.15), ("b", 0.01)]) == [("b", False), ("a", False)]


def test_forget_cancels_even_the_earliest_timer() -> None:
    assert run([("a", 0.02), ("b", 0.05)], forget=("a",)) == [("b", False)]


def test_many_requeues_of_few_keys_keep_the_heap_bounded() -> None:
    async def run_pass(key: Key, full: bool) -> None:
        return None

    async def main() -> int:
        scheduler = Scheduler(run_pass)
        for i in range(1000):
            scheduler.requeue(("ns", f"k{i % 3}"), 60.0 + i)
        size = len(scheduler._heap)
        scheduler.forget_all()
        return size

    assert asyncio.run(main()) <= 2 * 3 + 64 + 1
