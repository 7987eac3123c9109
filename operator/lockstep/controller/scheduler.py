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
"""

from __future__ import annotations

import asyncio
import contextvars
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
    _timers: dict[Key, asyncio.TimerHandle] = field(default_factory=dict)
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
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()

    def forget_all(self) -> None:
        for key in list(self._timers):
            self.forget(key)

    def requeue(self, key: Key, delay: float, full: bool = True, at_least: float = 0.5) -> None:
        """Look at `key` again after `delay` seconds (at least `at_least`)."""
        self.forget(key)
        loop = asyncio.get_running_loop()
        self._timers[key] = loop.call_later(
            max(delay, at_least), self._fire, key, full, context=self._context()
        )

    def resync(self, key: Key, delay: float) -> None:
        """A full pass after `delay`, unless an earlier look is already planned.

        Up to 10 % later, at random: passes that ran together (a burst of creations) do not
        resync together forever after. Never earlier: a drift check is due at `delay`.
        """
        if key not in self._timers:
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

    def _fire(self, key: Key, full: bool) -> None:
        log.debug("timer fired for %s/%s (full=%s)", key[0], key[1], full)
        self._timers.pop(key, None)
        self.trigger(key, full=full)
