"""Kill a migration pod's processes at random points, rerun at once, and tally what happened.

A trial: the lock sidecar starts and takes the lock (its ready file appears), the migrate process
starts, and at a random moment a signal hits the runner, the sidecar or both (SIGKILL: a pod
deleted with grace period 0, an OOM kill; SIGTERM: eviction, drain, `kubectl delete pod`). The
next run (a new sidecar and migrate process, as the Job's replacement pod) starts at once. Once
everything settled, what each run reported is checked against the database; a rerun that did not
succeed is retried (as the Job's backoff would) up to :data:`RETRIES` times.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from faultinject import monitor, workloads

RETRIES = 2
# Failures a retry cannot change (a person must act): the Job's retries stop there.
FINAL_REASONS = ("PartiallyApplied", "MigrationFailed", "InvalidSource")
# A migrate process's start-up before its first statement, roughly.
STARTUP_SECONDS = {"sql": 0.8, "alembic": 1.0, "knex": 1.5}
GRACE_SECONDS = 10.0  # after SIGTERM, SIGKILL (Kubernetes: terminationGracePeriodSeconds)
SETTLE_SECONDS = 30.0
RUN_TIMEOUT_SECONDS = 120.0
TARGETS = ("both", "both", "runner", "sidecar")  # a pod death hits both most often


@dataclass
class Tally:
    """The figures of one workload; ``notes`` says what went wrong, one line each."""

    workload: str
    runs: int = 0
    kills: int = 0
    kills_by: dict[str, int] = field(default_factory=dict)
    late: int = 0  # the migrate process had ended before the signal: not counted as a kill
    reruns: int = 0
    converged: int = 0
    disagreements: int = 0
    overlaps: int = 0
    overlap_samples: int = 0
    notes: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)

    def count_kill(self, kind: str) -> None:
        with self._lock:
            self.kills += 1
            self.kills_by[kind] = self.kills_by.get(kind, 0) + 1

    def note(self, text: str) -> None:
        with self._lock:
            self.notes.append(text)

    def figures(self) -> dict[str, Any]:
        return {
            "workload": self.workload, "runs": self.runs, "kills": self.kills,
            "killsBy": dict(sorted(self.kills_by.items())), "lateSignals": self.late,
            "reruns": self.reruns, "rerunsConverged": self.converged, "overlaps": self.overlaps,
            "overlapSamples": self.overlap_samples, "statusDisagreements": self.disagreements,
            "notes": self.notes[:50],
        }  # fmt: skip


class Run:
    """One pod's worth of processes: the lock sidecar and the migrate process."""

    def __init__(self, ident: str, lane: Lane) -> None:
        self.ident, self.lane = ident, lane
        self.directory = lane.workdir / ident.replace("/", "-")
        self.directory.mkdir(parents=True)
        self.ready_file = self.directory / "locked"
        self.result_file = self.directory / "result.json"
        self.sidecar: subprocess.Popen[bytes] | None = None
        self.migrate: subprocess.Popen[bytes] | None = None

    def _spawn(self, argv: list[str], role: str, extra: dict[str, str]) -> subprocess.Popen[bytes]:
        env = {**os.environ, "DATABASE_URL": self.lane.url, "PYTHONDONTWRITEBYTECODE": "1"}
        env.update(extra)
        log = (self.directory / f"{role}.log").open("wb")
        process = subprocess.Popen(
            argv, cwd=self.lane.source, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        log.close()
        self.lane.registry.track(process.pid, monitor.Owner(self.ident, role))
        return process

    def start(self) -> bool:
        """Start the sidecar, wait for the lock, start the migrate process; False if no lock."""
        self.lane.tally.add(runs=1)
        argv = [sys.executable, "-m", "lockstep.cli", "lock", "--wait-seconds", "60",
                "--ready-file", str(self.ready_file)]  # fmt: skip
        self.sidecar = self._spawn(argv, "sidecar", {})
        deadline = time.monotonic() + 90
        while not self.ready_file.exists():
            if self.sidecar.poll() is not None or time.monotonic() > deadline:
                self.lane.tally.note(f"{self.ident}: the sidecar never held the lock")
                return False
            time.sleep(0.02)
        workload = self.lane.workload
        command = workload.migrate_command(self.lane.source, self.result_file)
        self.migrate = self._spawn(command, "migrate", workload.migrate_env())
        return True

    def start_without_lock(self) -> None:
        """The migrate process alone, no sidecar: the monitor's positive control."""
        workload = self.lane.workload
        command = workload.migrate_command(self.lane.source, self.result_file)
        self.migrate = self._spawn(command, "migrate", workload.migrate_env())

    def signal(self, target: str, signum: signal.Signals) -> None:
        self.lane.registry.scan()  # every connection it holds now is known as its own
        for process in self._targets(target):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signum)

    def _targets(self, target: str) -> list[subprocess.Popen[bytes]]:
        chosen = {"both": [self.migrate, self.sidecar], "runner": [self.migrate],
                  "sidecar": [self.sidecar]}[target]  # fmt: skip
        return [process for process in chosen if process is not None]

    def finish(self, timeout: float = RUN_TIMEOUT_SECONDS) -> int | None:
        """Wait for the migrate process, then stop the sidecar as the kubelet does (SIGTERM,
        SIGKILL after the grace period); the migrate process's exit code."""
        code = _wait(self.migrate, timeout)
        if self.sidecar is not None and self.sidecar.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.sidecar.pid, signal.SIGTERM)
        _wait(self.sidecar, GRACE_SECONDS)
        for process in (self.migrate, self.sidecar):
            if process is not None:
                self.lane.registry.untrack(process.pid)
        return code

    def report(self) -> dict[str, Any] | None:
        try:
            loaded = json.loads(self.result_file.read_text())
        except (OSError, ValueError):
            return None
        return loaded if isinstance(loaded, dict) else None


def _wait(process: subprocess.Popen[bytes] | None, timeout: float) -> int | None:
    if process is None:
        return None
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        return process.wait()


@dataclass
class Lane:
    """One database and the trials run on it one after another."""

    name: str
    url: str
    workload: workloads.Workload
    registry: monitor.Registry
    tally: Tally
    workdir: Path
    settle: Callable[[], list[str]]  # waits the sessions out; those still there at the timeout
    reset: Callable[[str], None]  # empties the database at this URL
    rng: random.Random
    kills: int = 0

    @property
    def source(self) -> Path:
        return self.workdir / "source"

    def trials(self, kills: int) -> None:
        trial = 0
        while self.kills < kills and trial < kills * 3:
            trial += 1
            self.trial(f"{self.tally.workload}/{self.name}/t{trial}")

    def trial(self, ident: str) -> None:
        self.reset(self.url)
        sleeps = self.workload.write(self.source, self.rng)
        first = Run(f"{ident}/r0", self)
        if not first.start():
            first.finish(1)
            return
        target = self.rng.choice(TARGETS)
        signum = self.rng.choice((signal.SIGKILL, signal.SIGTERM))
        time.sleep(self.rng.uniform(0.05, STARTUP_SECONDS[self.workload.tool] + sleeps))
        assert first.migrate is not None
        if first.migrate.poll() is not None:
            self.tally.add(late=1)
            first.finish()
            return
        first.signal(target, signum)
        kind = f"{signum.name} {target}"
        self.kills += 1
        self.tally.count_kill(kind)
        self._after_kill(first, target)
        self._rerun(ident, first, kind)

    def _after_kill(self, first: Run, target: str) -> None:
        """What the kubelet does next: once the migrate container is gone (SIGKILL after the
        grace period), it stops the sidecar. A sidecar killed alone leaves its runner running."""
        if target != "sidecar":
            threading.Thread(target=first.finish, args=(GRACE_SECONDS,), daemon=True).start()

    def _rerun(self, ident: str, first: Run, kind: str) -> None:
        """The replacement pod, at once; retried while it fails, like the Job's backoff."""
        earlier: list[Run] = [first]
        for attempt in range(1, RETRIES + 2):
            rerun = Run(f"{ident}/r{attempt}", self)
            self.tally.add(reruns=1 if attempt == 1 else 0)
            started = rerun.start()
            code = rerun.finish() if started else None
            for run in earlier:
                run.finish()
            leftovers = self.settle()
            if leftovers:
                self.tally.note(
                    f"{rerun.ident}: sessions left after {SETTLE_SECONDS}s: {leftovers}"
                )
            state = self.workload.snapshot(self.url)
            problems = workloads.invariant_problems(state, self.workload)
            report = rerun.report()
            if self.workload.tool == "knex":
                report = {"result": "Succeeded", "to": "4"} if code == 0 else None
            problems += workloads.claim_problems(report, state, final=True)
            for run in earlier:
                problems += workloads.claim_problems(run.report(), state, final=False)
            for problem in problems:
                self.tally.note(f"{rerun.ident} after {kind}: {problem}")
            self.tally.add(disagreements=1 if problems else 0)
            if code == 0 and state.at_head():
                self.tally.add(converged=1)
                return
            reason = (report or {}).get("reason", f"exit {code}")
            self.tally.note(f"{rerun.ident} after {kind}: not converged ({reason})")
            if reason in FINAL_REASONS:
                return
            earlier = [rerun]
