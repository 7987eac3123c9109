"""Leader election decisions: acquire, renew, respect a live holder, take over an expired one."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from lockstep.controller import lease_rules
from lockstep.controller.lease_rules import ElectionConfig, LeaseRecord, Observation

CONFIG = ElectionConfig(lease_duration=15, renew_deadline=10, retry_period=2)
WALL = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def held_by(holder: str, transitions: int = 0) -> LeaseRecord:
    return LeaseRecord(holder, 15, WALL, WALL, transitions)


def test_no_lease_means_we_take_it() -> None:
    record = lease_rules.desired_record(Observation(None, 0), "me", CONFIG, 100, WALL)
    assert record == LeaseRecord("me", 15, WALL, WALL, 0)


def test_the_holder_renews_its_own_lease() -> None:
    record = lease_rules.desired_record(Observation(held_by("me"), 0), "me", CONFIG, 100, WALL)
    assert record is not None and record.holder == "me" and record.transitions == 0


def test_a_live_holder_is_respected() -> None:
    observation = Observation(held_by("other"), changed_at=100)
    assert lease_rules.desired_record(observation, "me", CONFIG, 114.9, WALL) is None


def test_an_expired_holder_is_replaced_and_transitions_counted() -> None:
    observation = Observation(held_by("other", transitions=4), changed_at=100)
    record = lease_rules.desired_record(observation, "me", CONFIG, 115.1, WALL)
    assert record is not None and record.holder == "me" and record.transitions == 5


def test_a_released_lease_is_taken_at_once() -> None:
    released = lease_rules.released(held_by("other"), WALL)
    assert released.holder == ""
    record = lease_rules.desired_record(Observation(released, 100), "me", CONFIG, 100.1, WALL)
    assert record is not None and record.holder == "me"


def test_expiry_runs_from_when_we_saw_the_record_change_not_from_its_timestamps() -> None:
    # A holder whose clock is far behind still counts as alive while it keeps renewing.
    first = lease_rules.observe(None, held_by("other"), now=100)
    same = lease_rules.observe(first, held_by("other"), now=200)
    assert same.changed_at == 100  # nothing changed: a dead holder
    renewed = LeaseRecord("other", 15, WALL, datetime(2026, 11, 29, 12, 0, 2, tzinfo=UTC))
    moved = lease_rules.observe(same, renewed, now=201)
    assert moved.changed_at == 201
    assert lease_rules.desired_record(moved, "me", CONFIG, 210, WALL) is None


@pytest.mark.parametrize(("since_renewal", "lost"), [(9.9, False), (10.1, True)])
def test_leader_gives_up_after_the_renew_deadline(since_renewal: float, lost: bool) -> None:
    assert lease_rules.lost_leadership(100, CONFIG, 100 + since_renewal) is lost


def test_config_rejects_inconsistent_timings() -> None:
    with pytest.raises(ValueError, match="lease duration > renew deadline > retry period"):
        ElectionConfig(lease_duration=5, renew_deadline=10, retry_period=2)


def test_lease_spec_round_trip() -> None:
    record = held_by("me", transitions=3)
    spec = lease_rules.spec_from_record(record)
    assert spec["renewTime"] == "2026-11-29T12:00:00.000000Z"
    assert lease_rules.record_from_spec(spec) == record
