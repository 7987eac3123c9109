"""The state gauges' own writer against `generate_latest` over the same collector, byte for byte.

`MigrationStates.text()` is what /metrics serves for the nine per-migration gauges; `collect()`
is what anything else reads (`metrics.REGISTRY`). Both must say the same: the same label
escaping, the same numbers, the same series after updates that remove or re-create them.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from lockstep.controller import metrics, metrics_text
from lockstep.controller.state_gauges import GAUGES, MigrationStates

Op = tuple[Any, ...]  # ("set", namespace, name, state) or ("forget", namespace, name)

ODD = 'a "quoted"\\back\\slash\nnew line, ünïcode ✓ 日本'
KEYS = [key for key, _, _ in GAUGES]


def apply(collector: MigrationStates, ops: Sequence[Op]) -> None:
    for method, *arguments in ops:
        getattr(collector, method)(*arguments)


def client_text(collector: MigrationStates) -> bytes:
    registry = CollectorRegistry(auto_describe=True)
    registry.register(collector)
    return generate_latest(registry)


def filled(ops: Sequence[Op]) -> MigrationStates:
    collector = MigrationStates()
    apply(collector, ops)
    return collector


OPS: list[Op] = [
    ("set", "shop", "orders", dict.fromkeys(KEYS, 0.0)),
    ("set", "shop", "users", {"ready": 1.0, "last_success": 1.7e9, "pending": 12.0}),
    ("set", ODD, ODD, {"ready": 1.0, "running_since": 1767225610.123456}),  # escaping
    ("set", "shop", "orders", {"running_since": 1767225600.0, "gated_pods": 3.0}),  # updated
    ("set", "shop", "orders", {"running_since": None}),  # None: that series goes
    ("set", "shop", "odd", {"pending": math.nan, "gated_pods": math.inf}),
    ("set", "shop", "odd", {"drift": -math.inf, "failing": -0.0, "stalled": 1e-7}),
    ("set", "shop", "odd", {"last_success": 2.0**70, "awaiting_approval": 123456789.0}),
    ("set", "shop", "gone", dict.fromkeys(KEYS, 1.0)),
    ("forget", "shop", "gone"),  # a deleted migration: none of its series stay
    ("forget", "shop", "never-seen"),
    ("set", "shop", "emptied", {"ready": 1.0}),
    ("set", "shop", "emptied", {"ready": None}),  # every value None: no row, no series
    ("set", "shop", "back", {"ready": 0.0}),
    ("forget", "shop", "back"),
    ("set", "", "", {"ready": 1.0}),  # empty label values are still labels
    ("set", "shop", "back", {"ready": 1.0}),  # after forget: a new series, at the end
]


def test_its_own_writer_is_generate_latest_to_the_byte() -> None:
    collector = filled(OPS)
    served = collector.text().encode()
    assert served == client_text(collector)
    text = served.decode()
    assert 'name="gone"' not in text
    assert 'name="emptied"' not in text
    assert (
        r'lockstep_migration_ready{name="a \"quoted\"\\back\\slash\nnew line, ünïcode ✓ 日本",'
        in text
    )
    last_success = "lockstep_migration_last_success_timestamp_seconds"
    assert f'{last_success}{{name="users",namespace="shop"}} 1.7e+09\n' in text
    assert (
        'lockstep_migration_running_since_timestamp_seconds{name="orders",namespace="shop"}'
        not in text
    )
    odd = '{name="odd",namespace="shop"}'
    for line in ("pending{0} NaN", "gated_pods{0} +Inf", "drift{0} -Inf", "failing{0} -0.0"):
        assert line.format(odd) in text
    # Re-created after forget: a new row, after the others again.
    ready = [line for line in text.splitlines() if line.startswith("lockstep_migration_ready{")]
    assert ready[-2:] == [
        'lockstep_migration_ready{name="",namespace=""} 1.0',
        'lockstep_migration_ready{name="back",namespace="shop"} 1.0',
    ]


@pytest.mark.parametrize(
    "ops",
    [
        [],  # help and type only
        [("set", "a", "b", {"ready": 1.0}), ("forget", "a", "b")],  # all forgotten
        [("set", "a", "b", {"running_since": 5.0})],  # one gauge of nine
    ],
)
def test_edges_match_too(ops: list[Op]) -> None:
    collector = filled(ops)
    assert collector.text().encode() == client_text(collector)


def test_many_random_updates_match() -> None:
    rng = random.Random(15)  # fixed: the same cases every run
    values = [None, 0.0, -0.0, 1.0, 2.0, 1.7e9, 1234567.5, 0.001, math.nan, math.inf, -math.inf]
    names = ["a", "b", 'q"', "s\\", "n\n", "ü", ODD]
    ops: list[Op] = []
    for _ in range(2000):
        namespace, name = rng.choice(names), rng.choice(names)
        if rng.random() < 0.1:
            ops.append(("forget", namespace, name))
        else:
            state = {key: rng.choice(values) for key in rng.sample(KEYS, rng.randint(1, 9))}
            ops.append(("set", namespace, name, state))
    collector = filled(ops)
    assert collector.text().encode() == client_text(collector)


def test_numbers_are_formatted_as_prometheus_client_formats_them() -> None:
    number = metrics_text.Numbers()
    for value in [0.0, -0.0, 1.0, 1.7e9, -5.5, math.nan, math.inf, -math.inf, 0.0, 1.7e9, -0.0]:
        assert number(value) == metrics_text.go(value)


def test_the_registry_still_yields_every_family_in_order() -> None:
    """What `metrics.REGISTRY.collect()` gives (the bench's floor, the alert-rule tests): the
    run metrics, prometheus-client's metrics, then the state gauges, as before."""
    metrics.set_state("ns-g", "m", {"ready": 1.0, "pending": 2.0})
    try:
        names = [family.name for family in metrics.REGISTRY.collect()]
        served = metrics.exposition()
        assert served == generate_latest(metrics.REGISTRY)
        assert 'lockstep_migration_pending{name="m",namespace="ns-g"} 2.0\n' in served.decode()
    finally:
        metrics.forget("ns-g", "m")
    assert names == [
        "lockstep_migration_runs",
        "lockstep_migration_duration_seconds",
        "lockstep_lock_wait_seconds",
        "lockstep_gate_admissions",
        "lockstep_reconcile",
        "lockstep_reconcile_duration_seconds",
        "lockstep_leader",
        "leader_election_master_status",
        "lockstep_build_info",
        *(metric for _, metric, _ in GAUGES),
    ]
