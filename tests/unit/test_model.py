"""Parsing the spec: defaults, clear errors naming the field, and the spec hash."""

from __future__ import annotations

from typing import Any

import pytest

from lockstep.model import SpecError, parse_spec, spec_hash

BASE: dict[str, Any] = {
    "tool": "sql",
    "source": {"configMapRef": {"name": "m"}},
    "database": {"engine": "postgresql", "urlSecretRef": {"name": "db", "key": "url"}},
}


def test_defaults_match_the_crd() -> None:
    spec = parse_spec(BASE)
    assert spec.target == "head"
    assert spec.retry.limit == 3
    assert spec.retry.backoff_seconds == 30
    assert spec.retry.max_backoff_seconds == 600
    assert spec.timeouts.job_seconds == 3600
    assert spec.timeouts.lock_wait_seconds == 600
    assert spec.timeouts.statement_lock_timeout == "5s"
    assert spec.when == "BeforeRollout"
    assert spec.downgrade_allowed is False
    assert spec.approval == "None"
    assert spec.suspend is False
    assert spec.uses_built_in_runner is True


@pytest.mark.parametrize(
    ("change", "field", "fragment"),
    [
        ({"tool": "liquibase"}, "tool", "not one of"),
        ({"tool": None}, "tool", "is required"),
        ({"database": None}, "database", "is required"),
        (
            {"database": {"engine": "oracle", "urlSecretRef": {"name": "a", "key": "b"}}},
            "database.engine",
            "not one of",
        ),
        (
            {"database": {"engine": "mysql", "urlSecretRef": {"name": "a"}}},
            "database.urlSecretRef",
            "name and key",
        ),
        ({"source": None}, "image", "required"),
        ({"tool": "flyway", "image": "x"}, "source", "sql or alembic"),
        ({"target": "  "}, "target", "must not be empty"),
        ({"retry": {"limit": 101}}, "retry.limit", "between 0 and 100"),
        ({"retry": {"limit": "3"}}, "retry.limit", "whole number"),
        (
            {"retry": {"backoffSeconds": 60, "maxBackoffSeconds": 30}},
            "retry.maxBackoffSeconds",
            "at least",
        ),
        ({"when": "AfterRollout"}, "rollout.workloads", "at least one workload"),
        ({"downgrade": "Maybe"}, "downgrade", "Forbid, Allow"),
        ({"env": {"A": "b"}}, "env", "must be a list"),
    ],
)
def test_bad_specs_name_the_field(change: dict[str, Any], field: str, fragment: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec({**BASE, **change})
    assert caught.value.field == field
    assert fragment in str(caught.value)
    assert str(caught.value).startswith(f"spec.{field}:")


def test_hash_ignores_fields_that_do_not_change_the_run() -> None:
    base = spec_hash(BASE)
    steering = {
        "suspend": True,
        "retry": {"limit": 9},
        "approval": "Always",
        "driftCheck": {"intervalSeconds": 60},
    }
    assert spec_hash({**BASE, **steering}) == base


@pytest.mark.parametrize(
    "change",
    [
        {"target": "3"},
        {"image": "shop:2"},
        {"env": [{"name": "A", "value": "1"}]},
        {"downgrade": "Allow"},
    ],
)
def test_hash_changes_with_what_the_job_does(change: dict[str, Any]) -> None:
    assert spec_hash({**BASE, **change}) != spec_hash(BASE)


def test_hash_includes_the_source_content() -> None:
    assert spec_hash(BASE, {"source": "aaa"}) != spec_hash(BASE, {"source": "bbb"})
    assert spec_hash(BASE, {"source": "aaa"}) == spec_hash(
        dict(reversed(list(BASE.items()))), {"source": "aaa"}
    )
