"""Prometheus metrics (prometheus-client). Names follow Prometheus conventions: base units,
`_total` for counters, `_timestamp_seconds` for times. No label ever holds a URL or a secret."""

from __future__ import annotations

from typing import Final

from prometheus_client import CollectorRegistry, Gauge, generate_latest

REGISTRY: Final = CollectorRegistry(auto_describe=True)

leader: Final = Gauge(
    "lockstep_leader",
    "1 when this replica holds the leader Lease and reconciles, 0 on a standby",
    registry=REGISTRY,
)
# The name client-go uses, so existing leader-election dashboards and alerts work unchanged.
leader_election_master_status: Final = Gauge(
    "leader_election_master_status",
    "1 when this replica is the leader of the named election",
    ["name"],
    registry=REGISTRY,
)


def set_leader(is_leader: bool, election: str = "lockstep-leader") -> None:
    value = 1 if is_leader else 0
    leader.set(value)
    leader_election_master_status.labels(name=election).set(value)


def exposition() -> bytes:
    return generate_latest(REGISTRY)
