"""Metrics: names, values derived from status, and no series left for deleted objects."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from lockstep.controller import metrics

STATUS = {
    "failures": 0,
    "history": [
        {"job": "a-2", "result": "Succeeded", "finishedAt": "2026-01-01T00:00:10Z"},
        {"job": "a-1", "result": "Failed", "finishedAt": "2026-01-01T00:00:00Z"},
    ],
    "conditions": [{"type": "Ready", "status": "True"}],
    "pendingCount": 2,
}


def samples(name: str) -> dict[tuple[tuple[str, str], ...], float]:
    text = metrics.exposition().decode()
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


def test_state_of_a_ready_status() -> None:
    assert metrics.state_of(STATUS) == {
        "ready": 1.0,
        "stalled": 0.0,
        "awaiting_approval": 0.0,
        "failing": 0.0,
        "drift": 0.0,
        "last_success": 1767225610.0,
        "running_since": None,
        "pending": 2.0,
        "gated_pods": 0.0,
    }


def test_awaiting_approval_is_read_from_the_ready_reason() -> None:
    waiting = {
        "conditions": [
            {"type": "Ready", "status": "False", "reason": "AwaitingApproval", "message": "m"}
        ]
    }
    assert metrics.state_of(waiting)["awaiting_approval"] == 1.0
    assert metrics.state_of(STATUS)["awaiting_approval"] == 0.0


def test_runs_and_gauges_are_exported_then_forgotten() -> None:
    metrics.record_run("ns1", "shop", "sql", {"result": "Succeeded", "durationSeconds": 3})
    metrics.record_lock_wait("ns1", "shop", 0.4)
    metrics.set_state("ns1", "shop", metrics.state_of(STATUS))
    labels = (("name", "shop"), ("namespace", "ns1"))
    assert samples("lockstep_migration_ready")[labels] == 1.0
    run_labels = (("name", "shop"), ("namespace", "ns1"), ("result", "Succeeded"), ("tool", "sql"))
    assert samples("lockstep_migration_runs_total")[run_labels] == 1.0
    assert samples("lockstep_migration_duration_seconds_count")[(*labels, ("tool", "sql"))] == 1.0
    assert samples("lockstep_lock_wait_seconds_count")[labels] == 1.0
    metrics.forget("ns1", "shop")
    exported = metrics.exposition().decode()
    assert 'namespace="ns1"' not in exported


def test_a_missing_value_removes_the_series() -> None:
    metrics.set_state("ns2", "a", {"running_since": 100.0})
    assert samples("lockstep_migration_running_since_timestamp_seconds")
    metrics.set_state("ns2", "a", {"running_since": None})
    assert not any(
        ("namespace", "ns2") in key
        for key in samples("lockstep_migration_running_since_timestamp_seconds")
    )


def test_leader_gauges_follow_the_election() -> None:
    metrics.set_leader(True)
    assert samples("lockstep_leader")[()] == 1.0
    assert samples("leader_election_master_status")[(("name", "lockstep-leader"),)] == 1.0
    metrics.set_leader(False)
    assert samples("lockstep_leader")[()] == 0.0


def test_build_info_names_this_build() -> None:
    import platform

    from lockstep import __version__

    exported = metrics.exposition().decode()
    line = next(x for x in exported.splitlines() if x.startswith("lockstep_build_info{"))
    assert f'version="{__version__}"' in line
    assert f'python_version="{platform.python_version()}"' in line
    assert line.endswith(" 1.0")
