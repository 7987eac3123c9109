"""The DatabaseMigration CRD (crds/databasemigrations.yaml), checked without a cluster.

The OpenAPI schema is checked with jsonschema and the CEL rules with cel-python
through tests/support/crd_eval/, which mirrors the apiserver's create path
(defaults, schema, list types, then the rules unless the schema found a
blocking error). The invalid and valid objects live in tests/data/ so that the
e2e suite applies the very same ones to a real kube-apiserver.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
from celpy.evaluation import CELEvalError

import crd_eval
import gen_crd_docs
from crd_eval import FieldError, InvalidCase, ValidCase

CRD = crd_eval.load_crd()
SCHEMA = crd_eval.version_schema(CRD)
SPEC = SCHEMA["properties"]["spec"]
STATUS = SCHEMA["properties"]["status"]
RULES = list(crd_eval.iter_rules(SCHEMA))
INVALID = crd_eval.load_invalid_cases()
VALID = crd_eval.load_valid_cases()

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def quickstart() -> dict[str, Any]:
    return {
        "tool": "sql",
        "source": {"configMapRef": {"name": "shop-migrations"}},
        "database": {"engine": "postgresql", "urlSecretRef": {"name": "shop-db", "key": "url"}},
    }


def errors_for(spec: dict[str, Any], name: str = "shop") -> list[FieldError]:
    return crd_eval.validate(SCHEMA, crd_eval.make_object(name, spec))


# --------------------------------------------------------------------------- the CRD object


def test_crd_names_group_and_version() -> None:
    assert CRD["apiVersion"] == "apiextensions.k8s.io/v1"
    assert CRD["kind"] == "CustomResourceDefinition"
    assert CRD["metadata"]["name"] == "databasemigrations.lockstep.dev"
    spec = CRD["spec"]
    assert spec["group"] == "lockstep.dev"
    assert spec["scope"] == "Namespaced"
    names = spec["names"]
    assert names["kind"] == "DatabaseMigration"
    assert names["listKind"] == "DatabaseMigrationList"
    assert names["plural"] == "databasemigrations"
    assert names["singular"] == "databasemigration"
    assert names["categories"] == ["lockstep"]
    [version] = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}


def test_short_names() -> None:
    assert CRD["spec"]["names"]["shortNames"] == ["dbm", "dbmig"]


def test_standard_labels() -> None:
    assert CRD["metadata"]["labels"] == {
        "app.kubernetes.io/name": "lockstep",
        "app.kubernetes.io/part-of": "lockstep",
    }


def test_printer_columns() -> None:
    [version] = CRD["spec"]["versions"]
    columns = [
        (c["name"], c["type"], c["jsonPath"], c.get("priority", 0))
        for c in version["additionalPrinterColumns"]
    ]
    ready = '.status.conditions[?(@.type=="Ready")]'
    assert columns == [
        ("Tool", "string", ".spec.tool", 0),
        ("Target", "string", ".spec.target", 0),
        ("Applied", "string", ".status.appliedRevision", 0),
        ("Ready", "string", f"{ready}.status", 0),
        ("Reason", "string", f"{ready}.reason", 1),
        ("Age", "date", ".metadata.creationTimestamp", 0),
    ]
    assert all(c.get("description") for c in version["additionalPrinterColumns"])


# --------------------------------------------------------------------------- the schema


def test_schema_is_structural_and_documented() -> None:
    assert crd_eval.structural_problems(SCHEMA) == []


def test_rules_name_only_declared_fields() -> None:
    assert crd_eval.rule_reference_problems(SCHEMA) == []


def test_rules_have_bounded_cost() -> None:
    assert crd_eval.cost_problems(SCHEMA) == []


def test_spec_fields_and_enums() -> None:
    props = SPEC["properties"]
    assert set(SPEC["required"]) == {"tool", "database"}
    assert props["tool"]["enum"] == [
        "alembic",
        "flyway",
        "prisma",
        "knex",
        "django",
        "sequelize",
        "sql",
    ]
    assert props["database"]["properties"]["engine"]["enum"] == [
        "postgresql",
        "mysql",
        "mariadb",
        "sqlite",
    ]
    assert props["when"]["enum"] == ["BeforeRollout", "AfterRollout"]
    assert props["downgrade"]["enum"] == ["Forbid", "Allow"]
    assert props["approval"]["enum"] == ["None", "Destructive", "Always"]
    assert props["rollout"]["properties"]["workloads"]["maxItems"] == 50
    assert props["rollout"]["properties"]["workloads"]["items"]["properties"]["kind"]["enum"] == [
        "Deployment",
        "StatefulSet",
    ]
    assert props["nodeSelector"]["additionalProperties"] == {"type": "string"}
    assert props["resources"]["x-kubernetes-preserve-unknown-fields"] is True


def test_defaults() -> None:
    obj = crd_eval.apply_defaults(SCHEMA, crd_eval.make_object("shop", quickstart()))
    spec = obj["spec"]
    assert spec["target"] == "head"
    assert spec["when"] == "BeforeRollout"
    assert spec["downgrade"] == "Forbid"
    assert spec["approval"] == "None"
    assert spec["suspend"] is False
    # Absent objects stay absent (driftCheck absent means no drift check).
    assert not {"retry", "timeouts", "driftCheck", "verify"} & spec.keys()

    spec = crd_eval.apply_defaults(
        SPEC, {**quickstart(), "retry": {}, "timeouts": {}, "driftCheck": {}}
    )
    assert spec["retry"] == {"limit": 3, "backoffSeconds": 30, "maxBackoffSeconds": 600}
    assert spec["timeouts"] == {
        "jobSeconds": 3600,
        "lockWaitSeconds": 600,
        "statementLockTimeout": "5s",
        "missingInputSeconds": 300,
    }
    assert spec["driftCheck"] == {"intervalSeconds": 600}


def test_job_names_fit_in_63_characters() -> None:
    """`<name>-<hash8>-r<attempt>` with the longest name and the highest attempt."""
    [name_rule] = [r for r in RULES if r.node == ""]
    assert name_rule.rule == "size(self.metadata.name) <= 48"
    most_attempts = SPEC["properties"]["retry"]["properties"]["limit"]["maximum"] + 1
    assert len(f"{'n' * 48}-{'h' * 8}-r{most_attempts}") <= 63


def test_history_entries_have_the_shape_of_last_run() -> None:
    last_run = STATUS["properties"]["lastRun"]
    history = STATUS["properties"]["history"]
    assert history["maxItems"] == 10
    assert history["items"]["properties"] == last_run["properties"]


def test_conditions_are_metav1_conditions_keyed_by_type() -> None:
    conditions = STATUS["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    item = conditions["items"]
    assert set(item["properties"]) == {
        "type",
        "status",
        "reason",
        "message",
        "lastTransitionTime",
        "observedGeneration",
    }
    assert item["properties"]["status"]["enum"] == ["True", "False", "Unknown"]
    assert item["properties"]["lastTransitionTime"]["format"] == "date-time"


def test_status_fields() -> None:
    assert set(STATUS["properties"]) == {
        "observedGeneration",
        "specHash",
        "appliedRevision",
        "appliedImage",
        "targetRevision",
        "pendingCount",
        "failures",
        "nextRetryAt",
        "retryToken",
        "activeJob",
        "lastRun",
        "history",
        "plan",
        "gatedPods",
        "inputMissingSince",
        "conditions",
    }
    assert STATUS["properties"]["observedGeneration"]["format"] == "int64"
    assert STATUS["properties"]["lastRun"]["properties"]["result"]["enum"] == [
        "Succeeded",
        "Failed",
        "Running",
    ]


def test_duplicate_conditions_are_rejected() -> None:
    condition = {
        "type": "Ready",
        "status": "True",
        "reason": "Succeeded",
        "message": "",
        "lastTransitionTime": "2025-01-02T03:04:05Z",
    }
    obj = crd_eval.make_object("shop", quickstart())
    obj["status"] = {"conditions": [condition, {**condition, "status": "False"}]}
    assert [str(e) for e in crd_eval.validate(SCHEMA, obj)] == [
        'status.conditions[1]: Duplicate value: {"type":"Ready"}'
    ]


# --------------------------------------------------------------------------- the CEL rules


def test_rule_count() -> None:
    assert len(RULES) == 37


@pytest.mark.parametrize("rule", RULES, ids=lambda r: f"{r.node or 'root'}:{r.field_path or ''}")
def test_rule_compiles_and_explains_itself(rule: crd_eval.Rule) -> None:
    crd_eval.compile_cel(rule.rule)
    if rule.message_expression:
        crd_eval.compile_cel(rule.message_expression)
    assert rule.extra == {}
    assert rule.reason in (None, "FieldValueInvalid", "FieldValueRequired", "FieldValueForbidden")
    # A human message: what is wrong, where, and what to do (after the colon/semicolon).
    assert rule.message
    assert rule.message.endswith(".")
    assert re.search(r"[:;]", rule.message), rule.message
    if rule.field_path:
        assert rule.field_path.startswith(".")


def test_every_rule_is_exercised_by_an_invalid_case() -> None:
    fired = {
        (e.field, e.rule)
        for case in INVALID
        for e in crd_eval.validate(SCHEMA, case.object)
        if e.rule is not None
    }
    assert {r.rule for r in RULES} == {rule for _, rule in fired}


def test_message_expressions_agree_with_messages() -> None:
    """messageExpression names the actual tool; the static message is its fallback."""
    errors = errors_for({**quickstart(), "tool": "knex", "source": quickstart()["source"]})
    [error] = [e for e in errors if e.field == "spec.source"]
    assert "not for tool knex" in error.detail


# --------------------------------------------------------------------------- invalid specs


def test_invalid_cases_file() -> None:
    assert len(INVALID) >= 15
    names = [c.name for c in INVALID]
    assert len(names) == len(set(names))
    for case in INVALID:
        assert DNS_LABEL.match(case.name), case.name
        assert len(case.name) <= 48, case.name
        assert case.object["apiVersion"] == crd_eval.API_VERSION
        assert case.object["kind"] == crd_eval.KIND
        assert case.message
    assert sum(c.rule for c in INVALID) >= len(RULES)
    assert sum(not c.rule for c in INVALID) >= 10


@pytest.mark.parametrize("case", INVALID, ids=lambda c: c.name)
def test_invalid_spec_is_rejected(case: InvalidCase) -> None:
    errors = crd_eval.validate(SCHEMA, case.object)
    shown = "\n".join(map(str, errors))
    matching = [e for e in errors if e.field == case.field and case.message in str(e)]
    assert matching, f"want {case.field}: ...{case.message}..., got:\n{shown}"
    assert all(e.from_rule == case.rule for e in matching), shown
    if case.rule:
        # The apiserver only runs the rules on an object the schema accepts.
        assert all(e.from_rule for e in errors), shown


def test_invalid_cases_fail_on_one_thing_only() -> None:
    """Each invalid case is a valid object with one mistake: one error, plus the
    apiserver's note that it skipped the rules after a blocking schema error."""
    for case in INVALID:
        errors = [e for e in crd_eval.validate(SCHEMA, case.object) if e.field]
        assert len(errors) == 1, (case.name, [str(e) for e in errors])


# --------------------------------------------------------------------------- valid specs


def test_valid_cases_file() -> None:
    names = {c.name for c in VALID}
    assert {
        "quickstart-sql",
        "alembic-with-image",
        "flyway-with-command",
        "contract-after-rollout",
        "full-spec",
    } <= names
    full = next(c for c in VALID if c.name == "full-spec")
    assert set(full.object["spec"]) == set(SPEC["properties"]), "full-spec must set every field"
    for case in VALID:
        assert DNS_LABEL.match(case.name), case.name
        assert len(case.name) <= 48


@pytest.mark.parametrize("case", VALID, ids=lambda c: c.name)
def test_valid_spec_is_accepted(case: ValidCase) -> None:
    assert [str(e) for e in crd_eval.validate(SCHEMA, case.object)] == []
    assert crd_eval.unknown_fields(SCHEMA, case.object) == []


def test_name_of_exactly_48_characters_is_accepted() -> None:
    assert errors_for(quickstart(), name="n" * 48) == []
    assert [e.field for e in errors_for(quickstart(), name="n" * 49)] == ["metadata.name"]


def test_retry_and_timeout_bounds_are_inclusive_where_they_should_be() -> None:
    equal = {**quickstart(), "retry": {"backoffSeconds": 60, "maxBackoffSeconds": 60}}
    assert errors_for(equal) == []
    same = {**quickstart(), "timeouts": {"jobSeconds": 600, "lockWaitSeconds": 600}}
    assert [e.field for e in errors_for(same)] == ["spec.timeouts.lockWaitSeconds"]


@pytest.mark.parametrize("target", ["head", "3", "a1b2c3d4", "20240101120000_add_orders.js"])
def test_targets_without_whitespace_are_accepted(target: str) -> None:
    assert errors_for({**quickstart(), "target": target}) == []


@pytest.mark.parametrize("target", ["head\n", "\t3", "a b"])
def test_targets_with_whitespace_are_rejected(target: str) -> None:
    assert [e.field for e in errors_for({**quickstart(), "target": target})] == ["spec.target"]


def test_shadow_database_may_share_the_secret_with_another_key() -> None:
    spec = {
        **quickstart(),
        "verify": {"shadowDatabase": {"urlSecretRef": {"name": "shop-db", "key": "shadow"}}},
    }
    assert errors_for(spec) == []


def test_misspelt_field_is_reported_as_unknown() -> None:
    obj = crd_eval.make_object("shop", {**quickstart(), "retries": {"limit": 1}})
    assert crd_eval.unknown_fields(SCHEMA, obj) == ["spec.retries"]


# --------------------------------------------------------------------------- the helper itself


def test_to_json_schema_drops_extensions_and_handles_nullable() -> None:
    schema = {
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": True,
        "properties": {
            "a": {"type": "string", "nullable": True, "enum": ["x"]},
            "b": {"x-kubernetes-int-or-string": True},
            "c": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "integer"}},
        },
    }
    converted = crd_eval.to_json_schema(schema)
    assert converted == {
        "type": "object",
        "properties": {
            "a": {"type": ["string", "null"], "enum": ["x", None]},
            "b": {"type": ["integer", "string"]},
            "c": {"type": "array", "items": {"type": "integer"}},
        },
    }
    assert crd_eval.schema_errors(schema, {"a": None, "b": "10%", "c": [1]}) == []
    assert [e.field for e in crd_eval.schema_errors(schema, {"b": 1.5, "c": [1, 1]})] == [
        "b",
        "c[1]",
    ]


def test_structural_checker_finds_problems() -> None:
    bad: dict[str, Any] = {
        "type": "object",
        "properties": {
            "untyped": {"description": "no type"},
            "both": {
                "type": "object",
                "description": "properties and additionalProperties",
                "properties": {"x": {"type": "string", "description": "x"}},
                "additionalProperties": {"type": "string"},
            },
            "undocumented": {"type": "string"},
            "keyed": {
                "type": "array",
                "description": "a list-map whose key is optional",
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["k"],
                "items": {
                    "type": "object",
                    "description": "item",
                    "properties": {"k": {"type": "string", "description": "key"}},
                },
            },
            "defaulted": {
                "type": "integer",
                "description": "a default out of range",
                "minimum": 1,
                "default": 0,
            },
        },
    }
    problems = "\n".join(crd_eval.structural_problems(bad))
    for expected in (
        "untyped: type is None",
        "both: additionalProperties beside properties",
        "undocumented: no description",
        "keyed: list-map key 'k' must be required or defaulted",
        "defaulted: default 0 is invalid",
    ):
        assert expected in problems


def test_reference_and_cost_checkers_find_problems() -> None:
    schema: dict[str, Any] = {
        "type": "object",
        "x-kubernetes-validations": [
            {"rule": "self.nmae == 'x'", "message": "typo."},
            {"rule": "self.name.startsWith('x')", "message": "unbounded."},
            {"rule": "true", "messageExpression": "string(size(self.items))", "message": "m."},
        ],
        "properties": {
            "name": {"type": "string", "description": "a name"},
            "items": {
                "type": "array",
                "description": "unbounded",
                "items": {
                    "type": "string",
                    "maxLength": 3,
                    "x-kubernetes-validations": [{"rule": "self != 'x'", "message": "no x."}],
                },
            },
        },
    }
    assert crd_eval.rule_reference_problems(schema) == ["<root>: nmae is not declared"]
    assert crd_eval.cost_problems(schema) == [
        ": self.name is a string without maxLength",
        ": messageExpression calls string(), cost is unbounded",
        "items[]: rule under list items without maxItems",
    ]


def test_cel_python_handles_the_kubernetes_functions_we_use() -> None:
    """`matches` (RE2, unanchored), string and list `size()`, `has()`, `in`."""
    assert crd_eval.evaluate_cel("self.matches('\\\\s')", "a b")
    assert not crd_eval.evaluate_cel("self.matches('^b')", "ab")
    assert crd_eval.evaluate_cel("size(self) == 3", "äöü")
    assert crd_eval.evaluate_cel("size(self) == 2", [1, 2])
    assert crd_eval.evaluate_cel("has(self.a) && !has(self.b)", {"a": 1})
    assert crd_eval.evaluate_cel("self.t in ['sql', 'alembic']", {"t": "sql"})
    with pytest.raises(CELEvalError):
        crd_eval.evaluate_cel("self.missing == 1", {})


def test_rule_that_fails_to_evaluate_is_an_error() -> None:
    schema = {
        "type": "object",
        "x-kubernetes-validations": [{"rule": "self.missing == 1", "message": "m."}],
    }
    [error] = crd_eval.rule_errors(schema, {})
    assert "evaluating rule" in error.detail


def test_case_objects_are_not_shared() -> None:
    case = copy.deepcopy(INVALID[0])
    crd_eval.validate(SCHEMA, case.object)
    assert case.object == INVALID[0].object  # validate() does not default in place


# --------------------------------------------------------------------------- the reference doc


def test_reference_doc_is_up_to_date() -> None:
    doc = gen_crd_docs.DOC_PATH
    assert doc.exists(), "run: python tools/gen_crd_docs.py"
    assert doc.read_text(encoding="utf-8") == gen_crd_docs.render(CRD), (
        "docs/reference/crd.md is stale: run python tools/gen_crd_docs.py"
    )


def test_reference_doc_mentions_every_field_and_rule() -> None:
    text = gen_crd_docs.render(CRD)
    for path, _node in crd_eval.iter_schema(SPEC, "spec"):
        if path.endswith(("[]", "{}")):
            continue
        assert f"`{path}`" in text, path
    for rule in RULES:
        assert " ".join(rule.rule.split()) in text


def test_doc_check_mode(tmp_path: Path) -> None:
    out = tmp_path / "crd.md"
    assert gen_crd_docs.main(["--out", str(out), "--check"]) == 1
    assert gen_crd_docs.main(["--out", str(out)]) == 0
    assert gen_crd_docs.main(["--out", str(out), "--check"]) == 0
