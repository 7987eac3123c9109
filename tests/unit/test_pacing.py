"""Restart without a burst: listed migrations get their first full pass at the set rate."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from lockstep.controller import pacing, reconcile, watches
from lockstep.controller.cache import Cache


def test_the_pacer_spaces_starts_at_its_rate_with_jitter() -> None:
    now = [100.0]
    gaps = iter([0.5, 1.5, 1.0, 1.0])
    pacer = pacing.Pacer(rate=10.0, clock=lambda: now[0], uniform=lambda a, b: next(gaps))
    assert [round(pacer.delay(), 3) for _ in range(3)] == [0.0, 0.05, 0.2]
    now[0] += 10.0  # the queue drained: the next one starts at once
    assert pacer.delay() == 0.0


def test_no_pacing_at_rate_zero() -> None:
    pacer = pacing.Pacer(rate=0.0)
    assert {pacer.delay() for _ in range(100)} == {0.0}


def body(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns", "generation": 1}, "spec": {}}


def test_listed_migrations_are_paced_and_new_ones_are_not() -> None:
    passes: list[tuple[str, bool]] = []

    async def scenario() -> tuple[list[float], list[str]]:
        reconciler = reconcile.Reconciler(cache=Cache(), emit=lambda *_: None)
        reconciler.pacer = pacing.Pacer(rate=100.0, uniform=lambda a, b: 1.0)

        async def record(key: tuple[str, str], full: bool) -> None:
            passes.append((key[1], full))

        reconciler.scheduler.run_pass = record
        loop = asyncio.get_running_loop()
        for i in range(50):
            watches.migration_event(reconciler, None, body(f"m{i}"))  # the listing
        watches.migration_event(reconciler, "ADDED", body("new"))  # created meanwhile
        await asyncio.sleep(0)
        due = sorted(when - loop.time() for when in reconciler.scheduler.planned().values())
        started = [name for name, _ in passes]
        reconciler.scheduler.forget_all()
        return due, started

    due, started = asyncio.run(scenario())
    # m0 at once; m1..m49 one every 10 ms (rate 100/s): half a second for 50, not all at once.
    assert started == ["m0", "new"]
    assert len(due) == 49
    assert 0.45 < due[-1] <= 0.5 and due[0] <= 0.011
    assert all(b - a > 0.005 for a, b in itertools.pairwise(due))
