"""Lease-based leader election: the pure decision, like client-go's leaderelection.

Only the leader reconciles. Expiry is judged on the *local* monotonic clock from the moment this
replica last saw the Lease record change, never by comparing the holder's timestamps with our
wall clock, so clock skew between nodes cannot make two leaders.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from lockstep import timestamps


@dataclass(frozen=True)
class ElectionConfig:
    lease_name: str = "lockstep-leader"
    namespace: str = "lockstep-system"
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if not self.lease_duration > self.renew_deadline > self.retry_period > 0:
            raise ValueError(
                "leader election needs lease duration > renew deadline > retry period > 0, got "
                f"{self.lease_duration}/{self.renew_deadline}/{self.retry_period}"
            )


@dataclass(frozen=True)
class LeaseRecord:
    holder: str
    duration_seconds: int
    acquire_time: datetime | None
    renew_time: datetime | None
    transitions: int = 0


@dataclass(frozen=True)
class Observation:
    """The last Lease record seen, and when (local monotonic seconds) it last changed."""

    record: LeaseRecord | None
    changed_at: float


def observe(previous: Observation | None, record: LeaseRecord | None, now: float) -> Observation:
    """Keep the change time while the record stays the same (a dead holder stops renewing)."""
    if previous is not None and previous.record == record:
        return previous
    return Observation(record, now)


def desired_record(
    observation: Observation,
    identity: str,
    config: ElectionConfig,
    now: float,
    wall_now: datetime,
) -> LeaseRecord | None:
    """The record to write to become or stay leader, or None when another replica holds it."""
    record = observation.record
    if record is None:
        return LeaseRecord(identity, _seconds(config.lease_duration), wall_now, wall_now, 0)
    if record.holder == identity:
        return replace(
            record, renew_time=wall_now, duration_seconds=_seconds(config.lease_duration)
        )
    held = bool(record.holder) and now < observation.changed_at + record.duration_seconds
    if held:
        return None
    return LeaseRecord(
        identity,
        _seconds(config.lease_duration),
        wall_now,
        wall_now,
        record.transitions + 1,
    )


def released(record: LeaseRecord, wall_now: datetime) -> LeaseRecord:
    """What a leader writes on clean shutdown so a standby takes over without waiting for expiry."""
    return replace(record, holder="", duration_seconds=1, renew_time=wall_now)


def lost_leadership(last_renewed: float, config: ElectionConfig, now: float) -> bool:
    """A leader that could not renew within the deadline must stop acting at once."""
    return now - last_renewed > config.renew_deadline


def record_from_spec(spec: dict[str, Any] | None) -> LeaseRecord | None:
    if spec is None:
        return None
    return LeaseRecord(
        holder=str(spec.get("holderIdentity") or ""),
        duration_seconds=int(spec.get("leaseDurationSeconds") or 0),
        acquire_time=timestamps.parse(spec.get("acquireTime")),
        renew_time=timestamps.parse(spec.get("renewTime")),
        transitions=int(spec.get("leaseTransitions") or 0),
    )


def spec_from_record(record: LeaseRecord) -> dict[str, Any]:
    return {
        "holderIdentity": record.holder,
        "leaseDurationSeconds": record.duration_seconds,
        "acquireTime": _micro(record.acquire_time),
        "renewTime": _micro(record.renew_time),
        "leaseTransitions": record.transitions,
    }


def _seconds(value: float) -> int:
    return max(1, round(value))


def _micro(moment: datetime | None) -> str | None:
    # Lease times are MicroTime: RFC 3339 with microseconds.
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if moment else None
