"""Restart without a burst: the first full passes after (re)start, spread at a set rate.

After a restart (or a watch that lists again), every DatabaseMigration arrives at once, and each
first sight asks for a full pass: the Secret and ConfigMap reads that the input watches have not
served yet (GETs; a restart's passes may run before those watches have listed) and, now and
then, a database connection for the drift check. At 10,000 migrations that burst is what turned
an OOM kill into a crash loop. The pacer hands out start times at `rate` passes per second, each
gap jittered (0.5x to 1.5x) so that the resync timers these passes set do not fire in lockstep
later either. Objects created while the operator runs are not paced: only the listing's objects
are.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from lockstep import constants

DEFAULT_INITIAL_PASS_RATE = constants.DEFAULT_INITIAL_PASS_RATE
JITTER = 0.5


@dataclass
class Pacer:
    """Start times at `rate` per second (0: no pacing), gaps jittered by ±`jitter`."""

    rate: float = DEFAULT_INITIAL_PASS_RATE
    jitter: float = JITTER
    clock: Callable[[], float] = time.monotonic
    uniform: Callable[[float, float], float] = field(default=random.uniform)
    _next_free: float = 0.0

    def delay(self) -> float:
        """Seconds to wait before this pass: 0 when nothing is queued ahead of it."""
        if self.rate <= 0:
            return 0.0
        now = self.clock()
        start = max(now, self._next_free)
        gap = self.uniform(1.0 - self.jitter, 1.0 + self.jitter) / self.rate
        self._next_free = start + gap
        return start - now
