"""Local mode judges objects as the API server does: the CRD's schema and rules, from one source.

The e2e twin (tests/e2e/test_local_parity.py) sends the same objects to a real API server.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

import crd_eval
from lockstep import model
from lockstep.local import validation

REPO = Path(__file__).resolve().parents[2]
INVALID = crd_eval.load_invalid_cases()
VALID = crd_eval.load_valid_cases()


def migration(**spec_changes: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "tool": "sql",
        "source": {"configMapRef": {"name": "files"}},
        "database": {"engine": "sqlite", "urlSecretRef": {"name": "db", "key": "url"}},
    }
    spec.update(spec_changes)
    return crd_eval.make_object("shop", spec)


def config_map(**fields: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "files"}, **fields}


def test_the_packaged_crd_is_the_one_in_crds() -> None:
    packaged = REPO / "operator" / "lockstep" / "local" / validation.CRD_FILE
    assert packaged.read_bytes() == (REPO / "crds" / "databasemigrations.yaml").read_bytes(), (
        "stale copy: cp crds/databasemigrations.yaml operator/lockstep/local/"
    )


def test_the_runner_and_the_crd_accept_the_same_statement_lock_timeouts() -> None:
    crd = yaml.safe_load((REPO / "crds" / "databasemigrations.yaml").read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    timeouts = schema["properties"]["spec"]["properties"]["timeouts"]["properties"]
    assert timeouts["statementLockTimeout"]["pattern"] == model.STATEMENT_LOCK_TIMEOUT_PATTERN


@pytest.mark.parametrize("text", ["0s", "00ms", "1.5s", "2m", "1h", " 5s", "5 s", "-1s"])
def test_a_statement_lock_timeout_the_crd_refuses_is_refused_by_the_spec_parser(text: str) -> None:
    assert not re.match(model.STATEMENT_LOCK_TIMEOUT_PATTERN, text)
    with pytest.raises(model.SpecError, match="statementLockTimeout"):
        model.parse_spec(migration(timeouts={"statementLockTimeout": text})["spec"])


@pytest.mark.parametrize("case", INVALID, ids=[c.name for c in INVALID])
def test_every_invalid_spec_is_refused(case: crd_eval.InvalidCase) -> None:
    checked = validation.check(case.object)
    assert any(case.field in problem for problem in checked.problems), checked.problems


@pytest.mark.parametrize("case", VALID, ids=[c.name for c in VALID])
def test_every_valid_spec_is_accepted(case: crd_eval.ValidCase) -> None:
    assert validation.check(case.object).problems == ()


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (migration(targt="1"), "spec.targt: unknown field"),
        (migration(target=1.1), "spec.target: Invalid value"),
        ({**migration(), "apiVersion": "lockstep.dev/v1"}, "apiVersion 'lockstep.dev/v1'"),
        ({**migration(), "kind": "DatabaseMigrations"}, None),
        ({**migration(), "metadata": {"name": "Shop"}}, "metadata.name 'Shop'"),
        (config_map(data={"a/b.sql": "x"}), "data key 'a/b.sql'"),
        (config_map(data={"V1.sql": 1}), "data: must map keys to strings"),
        (config_map(binaryData={"V1.sql": "%%%"}), "binaryData['V1.sql']: not base64"),
        (config_map(data={"a": "x"}, binaryData={"a": "eA=="}), "duplicate of key 'a'"),
        ({**config_map(), "apiVersion": "v2"}, "apiVersion 'v2': use v1"),
        ({**config_map(), "dta": {}}, "dta: unknown field"),
    ],
)
def test_what_the_api_server_refuses_is_refused(
    document: dict[str, Any], expected: str | None
) -> None:
    problems = validation.check(document).problems
    if expected is None:  # another kind: not ours to judge, as for any object of the file
        assert problems == ()
    else:
        assert any(expected in p for p in problems), problems


def test_a_yaml_null_is_pruned_then_defaulted_not_the_string_none() -> None:
    checked = validation.check(migration(target=None, image=None))
    assert checked.problems == ()
    spec = model.parse_spec(checked.body["spec"])
    assert spec.target == "head"
    assert spec.image is None


def test_a_required_field_given_as_null_is_missing() -> None:
    checked = validation.check(migration(tool=None))
    assert any("spec.tool: Required value" in p for p in checked.problems)


def test_validation_does_not_change_the_document() -> None:
    document = migration(target=None)
    before = copy.deepcopy(document)
    validation.check(document)
    assert document == before
