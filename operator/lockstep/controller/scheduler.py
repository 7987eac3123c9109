"""When to reconcile which DatabaseMigration: triggers, one pass at a time, requeue timers.

A trigger coalesces: at most one pass runs per object, plus one queued behind it. A pass that
asks to look again later sets a timer; a new trigger or timer replaces the old one.

At most MAX_RUNNING_PASSES passes run at once; the objects triggered beyond that wait, in
order, as keys. A pass mostly waits for the API server on a worker thread (a handful of them),
so more at once would only wait longer; but each waiting pass holds its task, its coroutines
and what it has read. A 10,000-migration start had 9,474 passes in flight at once (first
passes paced at 50 a second, each deleting old Jobs at about 15 migrations a second: ADR 0015
point 10).

Passes and timers run in `context` when one is set: asyncio copies the caller's context into
every task and timer, and a trigger's caller is a Kopf handler whose context holds the event's
cause, and with it the whole body Kopf received. A resync timer per migration kept one such body
alive for 10 minutes each (bench/fleet.py, 1,400 Kopf Body objects at 1,400 migrations).

Timers are one heap and one loop timer for its earliest entry, not a loop timer per migration:
every migration has a resync planned, and 10,000 TimerHandles with their copied contexts and
bound methods were about 3 MiB of a 10,000-migration operator (census, ADR 0015 point 11).
"""

from __future__ import annotations

import asyncio
import contextvars
import heapq
import itertools
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from lockstep.controller import metrics
from lockstep.controller.cache import Key

log = logging.getLogger("lockstep.reconcile")

# One pass over `key`; `full` asks it to read the Secret and the ConfigMap too (from the input
# cache, or with GETs where it has not got them).
Pass = Callable[[Key, bool], Awaitable[None]]

ERROR_RETRY_SECONDS = 10.0
RESYNC_JITTER = 0.1
MAX_RUNNING_PASSES = 64


@dataclass
class Scheduler:
    run_pass: Pass
    max_running: int = MAX_RUNNING_PASSES
    _running: dict[Key, asyncio.Task[None]] = field(default_factory=dict)
    # Triggered while max_running passes ran: in trigger order (a dict as an ordered set).
    _waiting: dict[Key, None] = field(default_factory=dict)
    _dirty: set[Key] = field(default_factory=set)
    _full: set[Key] = field(default_factory=set)
    # Requeue timers: when each key is due (loop time) and whether for a full pass. The heap may
    # hold entries a later requeue or `forget` replaced: `_due` says which one is current.
    _due: dict[Key, tuple[float, bool]] = field(default_factory=dict)
    _heap: list[tuple[float, int, Key]] = field(default_factory=list)
    _order: itertools.count[int] = field(default_factory=itertools.count)
    _wakeup: asyncio.TimerHandle | None = None
    # The context passes and timers run in (copied for each); None: the caller's, as asyncio does.
    context: contextvars.Context | None = None

    def _context(self) -> contextvars.Context | None:
        return None if self.context is None else self.context.copy()

    def trigger(self, key: Key, full: bool = False) -> None:
        """Reconcile `key` soon. Coalesces: at most one pass runs per object, plus one queued.

        `full` asks for a pass that reads the Secret and the ConfigMap even if nothing that
        the watches see has changed.
        """
        if full:
            self._full.add(key)
        if key in self._running:
            self._dirty.add(key)
        elif len(self._running) >= self.max_running:
            self._waiting[key] = None
        else:
            self._start(key)

    def _start(self, key: Key) -> None:
        self._waiting.pop(key, None)
        loop = asyncio.get_running_loop()
        self._running[key] = loop.create_task(self._loop(key), context=self._context())

    def _start_waiting(self) -> None:
        while self._waiting and len(self._running) < self.max_running:
            self._start(next(iter(self._waiting)))

    def forget(self, key: Key) -> None:
        """Cancel the timer of `key`, if it has one."""
        self._due.pop(key, None)

    def forget_all(self) -> None:
        self._due.clear()
        self._heap.clear()
        if self._wakeup is not None:
            self._wakeup.cancel()
            self._wakeup = None

    def planned(self) -> dict[Key, float]:
        """The keys with a timer, and when it fires (loop time)."""
        return {key: when for key, (when, _) in self._due.items()}

    def requeue(self, key: Key, delay: float, full: bool = True, at_least: float = 0.5) -> None:
        """Look at `key` again after `delay` seconds (at least `at_least`)."""
        loop = asyncio.get_running_loop()
        when = loop.time() + max(delay, at_least)
        self._due[key] = (when, full)
        heapq.heappush(self._heap, (when, next(self._order), key))
        if len(self._heap) > 2 * len(self._due) + 64:  # mostly replaced entries: rebuild
            self._heap = [(due, next(self._order), k) for k, (due, _) in self._due.items()]
            heapq.heapify(self._heap)
        self._arm(loop)

    def resync(self, key: Key, delay: float) -> None:
        """A full pass after `delay`, unless an earlier look is already planned.

        Up to 10 % later, at random: passes that ran together (a burst of creations) do not
        resync together forever after. Never earlier: a drift check is due at `delay`.
        """
        if key not in self._due:
            jitter = random.uniform(1.0, 1.0 + RESYNC_JITTER)  # noqa: S311 - spreading timers
            self.requeue(key, delay * jitter, full=True)

    async def _loop(self, key: Key) -> None:
        try:
            while True:
                self._dirty.discard(key)
                full = key in self._full
                self._full.discard(key)
                started = time.monotonic()
                try:
                    await self.run_pass(key, full)
                except Exception:
                    log.exception(
                        "reconcile failed", extra={"namespace": key[0], "migration": key[1]}
                    )
                    self.requeue(key, ERROR_RETRY_SECONDS)
                    result = "error"
                else:
                    result = "ok"
                metrics.record_reconcile(result, time.monotonic() - started)
                if key not in self._dirty:
                    return
                if self._waiting:
                    # Others wait for a slot: this key's next pass queues behind them, so a key
                    # triggered over and over cannot hold its slot while they wait.
                    self._dirty.discard(key)
                    self._waiting[key] = None
                    return
        finally:
            self._running.pop(key, None)
            task = asyncio.current_task()
            if task is None or not task.cancelling():  # not while the operator stops
                self._start_waiting()

    def _current(self, entry: tuple[float, int, Key]) -> bool:
        planned = self._due.get(entry[2])
        return planned is not None and planned[0] == entry[0]

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        """Keep one loop timer, at the earliest current entry of the heap."""
        while self._heap and not self._current(self._heap[0]):
            heapq.heappop(self._heap)
        earliest = self._heap[0][0] if self._heap else None
        if self._wakeup is not None:
            if earliest is not None and self._wakeup.when() <= earliest:
                return  # fires first; it re-arms for the rest
            self._wakeup.cancel()
            self._wakeup = None
        if earliest is not None:
            self._wakeup = loop.call_at(earliest, self._fire_due, earliest, context=self._context())

    def _fire_due(self, armed_for: float) -> None:
        self._wakeup = None
        loop = asyncio.get_running_loop()
        now = max(loop.time(), armed_for)  # the loop may call a timer up to its resolution early
        while self._heap and self._heap[0][0] <= now:
            entry = heapq.heappop(self._heap)
            if not self._current(entry):
                continue
            key = entry[2]
            _, full = self._due.pop(key)
            log.debug("timer fired for %s/%s (full=%s)", key[0], key[1], full)
            self.trigger(key, full=full)
        self._arm(loop)
