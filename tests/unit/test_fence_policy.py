"""The fence's one policy (lockstep.pod.fence_policy), with fake backends and a fake clock.

The real servers are in tests/integration/test_fence.py; here: the order (end each, then poll),
the bounded wait, what is logged and what is raised, the same for every engine and driver.
"""

from __future__ import annotations

import logging

import pytest

from lockstep.db_identity import DatabaseIdentity
from lockstep.pod import fence_policy, lock_words

PG = DatabaseIdentity("postgresql", "db", 5432, "shop")
MARIADB = DatabaseIdentity("mariadb", "db", 3306, "shop")
LOG = logging.getLogger("lockstep.test-fence")


class FakeClock:
    """time.monotonic and time.sleep: sleeping moves the clock, nothing else does."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class FakeServer:
    """Backends that go after being told to end, once ``polls_until_gone`` polls have passed."""

    def __init__(self, tagged: list[lock_words.FencedBackend], polls_until_gone: int) -> None:
        self.backends = tagged
        self.polls_until_gone = polls_until_gone
        self.calls: list[str] = []

    def tagged(self) -> list[lock_words.FencedBackend]:
        self.calls.append("tagged")
        return list(self.backends)

    def end(self, backend: lock_words.FencedBackend) -> None:
        self.calls.append(f"end {backend.backend_id}")

    def alive(self, ids: set[int]) -> set[int]:
        self.calls.append(f"alive {sorted(ids)}")
        self.polls_until_gone -= 1
        return set(ids) if self.polls_until_gone > 0 else set()

    def backends_of(self) -> fence_policy.Backends:
        return fence_policy.Backends(self.tagged, self.end, self.alive)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(fence_policy, "time", fake)  # the policy's clock only
    return fake


def test_nothing_tagged_ends_nothing_and_logs_nothing(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    server = FakeServer([], polls_until_gone=0)
    with caplog.at_level(logging.WARNING, LOG.name):
        assert fence_policy.end_and_wait(server.backends_of(), PG, 10, LOG) == []
    assert server.calls == ["tagged"]
    assert caplog.messages == []
    assert clock.sleeps == []


def test_each_backend_is_ended_then_all_are_waited_out(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    first = lock_words.FencedBackend(11, "SELECT pg_sleep(30)")
    second = lock_words.FencedBackend(12, "")
    server = FakeServer([first, second], polls_until_gone=3)
    with caplog.at_level(logging.WARNING, LOG.name):
        fenced = fence_policy.end_and_wait(server.backends_of(), PG, 10, LOG)
    assert fenced == [first, second]
    assert server.calls == [
        "tagged",
        "end 11",
        "end 12",
        "alive [11, 12]",
        "alive [11, 12]",
        "alive [11, 12]",
    ]
    assert clock.sleeps == [fence_policy.POLL_SECONDS] * 2
    assert caplog.messages == [
        f"fencing {first.describe()} on {PG}: terminating it",
        f"fencing {second.describe()} on {PG}: terminating it",
        f"{lock_words.describe(fenced)} on {PG}",
    ]
    assert {record.name for record in caplog.records} == {LOG.name}  # the caller's logger


def test_a_backend_still_there_at_the_deadline_stops_the_run(clock: FakeClock) -> None:
    server = FakeServer([lock_words.FencedBackend(7, "ALTER TABLE t ...")], polls_until_gone=99)
    with pytest.raises(lock_words.FenceFailed) as caught:
        fence_policy.end_and_wait(server.backends_of(), MARIADB, 1, LOG)
    assert str(caught.value) == str(lock_words.not_gone(MARIADB, {7}, 1, "KILL {}"))
    # Polled every POLL_SECONDS until the deadline, then once more at it; no sleep after that.
    assert 101.0 <= clock.now < 101.0 + fence_policy.POLL_SECONDS
    assert server.calls.count("alive [7]") == len(clock.sleeps) + 1


def test_a_backend_that_may_not_be_ended_stops_the_run_before_any_wait(clock: FakeClock) -> None:
    backend = lock_words.FencedBackend(5, "")

    def refuse(ended: lock_words.FencedBackend) -> None:
        raise lock_words.pg_may_not_end(ended, PG, "app")

    def alive(ids: set[int]) -> set[int]:
        raise AssertionError("polled after a refusal")

    backends = fence_policy.Backends(lambda: [backend], refuse, alive)
    with pytest.raises(lock_words.FenceFailed, match="GRANT pg_signal_backend"):
        fence_policy.end_and_wait(backends, PG, 10, LOG)
    assert clock.sleeps == []


def test_a_wait_of_zero_still_polls_once(clock: FakeClock) -> None:
    """Gone at the first look: no error even with no time to wait (the sidecar's stop fence)."""
    server = FakeServer([lock_words.FencedBackend(3, "")], polls_until_gone=1)
    assert fence_policy.end_and_wait(server.backends_of(), PG, 0, LOG) != []
    assert clock.sleeps == []
