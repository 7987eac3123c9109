"""spec.versionTable and spec.baseline: parsed, named, passed to the tools (pure, no database)."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from lockstep import model
from lockstep.contract import commands, helper_args, migration_args
from lockstep.controller import cluster_facts, outcome
from lockstep.jobs import containers, job_spec, naming
from lockstep.model import SpecError, VersionTable, parse_spec
from lockstep.planning.facts import JobView
from lockstep.pod.run_request import RunResult
from lockstep.tools import version_table

CRD = Path(__file__).parents[2] / "crds" / "databasemigrations.yaml"
DATABASE = {"engine": "postgresql", "urlSecretRef": {"name": "db", "key": "url"}}


def raw(tool: str = "sql", **fields: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"tool": tool, "database": DATABASE, **fields}
    if tool in ("sql", "alembic"):
        spec["source"] = {"configMapRef": {"name": "files"}}
    else:
        spec["image"] = "shop:1"
    return spec


def crd_spec() -> dict[str, Any]:
    document = yaml.safe_load(CRD.read_text())
    schema = document["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return dict(schema["properties"]["spec"]["properties"])


def test_the_patterns_are_the_crds_word_for_word() -> None:
    spec = crd_spec()
    for key in ("name", "schema"):
        pattern = spec["versionTable"]["properties"][key]["pattern"]
        assert pattern == model.IDENTIFIER_PATTERN
    assert spec["baseline"]["properties"]["version"]["pattern"] == model.BASELINE_VERSION_PATTERN


@pytest.mark.parametrize(
    "name", ['a"; DROP TABLE x; --', "1table", "with space", "x" * 64, "schema.table", ""]
)
def test_names_that_are_not_plain_identifiers_are_refused(name: str) -> None:
    assert not re.match(model.IDENTIFIER_PATTERN, name)
    with pytest.raises(SpecError, match=r"versionTable\.name"):
        parse_spec(raw(versionTable={"name": name}))


def test_baseline_is_parsed_for_sql_and_refused_elsewhere() -> None:
    assert parse_spec(raw(baseline={"version": "1.2"})).baseline_version == "1.2"
    with pytest.raises(SpecError, match="tool flyway baselines through its own"):
        parse_spec(raw("flyway", baseline={"version": "3"}))
    with pytest.raises(SpecError, match=r"baseline\.version"):
        parse_spec(raw(baseline={"version": "V3"}))


def test_each_resource_gets_its_own_readable_sql_history_table() -> None:
    orders = version_table.sql_history_name("shop/orders-api")
    assert re.fullmatch(r"lockstep_orders_api_[0-9a-f]{8}", orders)
    # The same name in another namespace, and names that flatten alike, still differ.
    assert version_table.sql_history_name("other/orders-api") != orders
    assert version_table.sql_history_name("shop/orders.api") != orders
    longest = version_table.sql_history_name("ns/" + "a" * 48)
    assert len(longest) <= 63 and re.match(model.IDENTIFIER_PATTERN, longest)
    assert version_table.sql_history_name("") == "lockstep_schema_history"  # a hand-run


@pytest.mark.parametrize(
    ("tool", "configured", "expected"),
    [
        ("sql", VersionTable(), "lockstep_orders_"),
        ("sql", VersionTable("history", "audit"), "audit.history"),
        ("flyway", VersionTable(), "flyway_schema_history"),
        ("flyway", VersionTable(schema="app"), "app.flyway_schema_history"),
        ("alembic", VersionTable("shop_alembic"), "shop_alembic"),
    ],
)
def test_one_answer_for_runner_and_readers(
    tool: str, configured: VersionTable, expected: str
) -> None:
    spec = parse_spec(raw(tool), owner="shop/orders")
    spec = dataclasses.replace(spec, version_table=configured)
    ref, fallback = version_table.reader_table(spec)
    assert ref.shown().startswith(expected)
    # Only tool sql's own default table falls back to the shared one of an older Lockstep.
    expect_fallback = tool == "sql" and configured.name is None
    assert fallback == ("lockstep_schema_history" if expect_fallback else None)
    if tool == "sql":
        assert version_table.run_options(spec)["version_table"] == ref.name


def test_the_runner_command_carries_the_table_the_owner_and_the_baseline() -> None:
    spec = parse_spec(raw(baseline={"version": "3"}), owner="shop/orders")
    argv = containers.runner_command(spec, naming.JobRequest(attempt=0, target="head"))
    args = migration_args.RunArgs(
        tool="sql", source=Path("/migrations"), **version_table.run_options(spec)
    )
    tail = args.to_argv()[args.to_argv().index("--version-table") :]
    assert tail == (
        "--version-table", version_table.sql_history_name("shop/orders"),
        "--owner", "shop/orders", "--baseline", "3",
    )  # fmt: skip
    assert " ".join(tail) in " ".join(argv)


def test_flyway_is_told_through_its_own_variables() -> None:
    spec = parse_spec(raw("flyway", versionTable={"name": "hist", "schema": "app"}), "shop/x")
    container = containers.migrate_container(
        spec, naming.JobRequest(attempt=0, target="head"), "lockstep:1"
    )
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["FLYWAY_TABLE"] == "hist" and env["FLYWAY_DEFAULT_SCHEMA"] == "app"
    assert env["LOCKSTEP_VERSION_TABLE"] == "hist"
    assert env["LOCKSTEP_VERSION_TABLE_SCHEMA"] == "app"
    default = parse_spec(raw("flyway"), "shop/x")
    names = {e["name"] for e in containers.migrate_container(
        default, naming.JobRequest(attempt=0, target="head"), "lockstep:1"
    )["env"]}  # fmt: skip
    assert not names & {"FLYWAY_TABLE", "LOCKSTEP_VERSION_TABLE"}


def test_a_baseline_is_never_reported_as_run() -> None:
    result = RunResult("sql", "up", "2", "3", ["3"], 0.1, 0.0, baselined=["1", "2"])
    assert result.summary().startswith(
        "baselined 2 existing migration(s) up to 2 (recorded, not run); applied 1 migration(s) (3)"
    )
    report = {"result": "Succeeded", **json.loads(result.to_json())}
    job = JobView(name="j", spec_hash="h", attempt=0, state="Succeeded")
    _, message = outcome._outcome_summary(report, job)
    assert message == "baselined 2 existing migration(s) up to 2 (recorded, not run); applied 3"


def test_a_tool_in_an_image_claims_its_table_after_the_lock_is_held() -> None:
    spec = parse_spec(raw("flyway", versionTable={"schema": "app"}), owner="shop/orders")
    pod = job_spec.build_pod_spec(spec, naming.JobRequest(attempt=0, target="head"), "ls:1")
    names = [c["name"] for c in pod["initContainers"]]
    assert names[-2:] == ["lockstep-lock", "lockstep-claim"]
    command = tuple(pod["initContainers"][-1]["command"])
    assert commands.parse(command) == helper_args.ClaimArgs(
        tool="flyway",
        version_table="flyway_schema_history",
        owner="shop/orders",
        version_table_schema="app",
    )
    built_in = parse_spec(raw("sql"), owner="shop/orders")  # the runner claims by itself
    pod = job_spec.build_pod_spec(built_in, naming.JobRequest(attempt=0, target="head"), "ls:1")
    assert "lockstep-claim" not in [c["name"] for c in pod["initContainers"]]


def test_a_refused_claim_becomes_the_runs_reason() -> None:
    said = '{"result":"Failed","reason":"VersionTableInUse","message":"shop/a already records"}'
    pod = {
        "status": {
            "initContainerStatuses": [
                {"name": "lockstep-lock", "state": {"terminated": {"exitCode": 0}}},
                {
                    "name": "lockstep-claim",
                    "state": {"terminated": {"exitCode": 1, "message": said}},
                },
            ]
        }
    }
    assert cluster_facts.failed_claim(pod) == ("VersionTableInUse", "shop/a already records")
    assert cluster_facts.failed_claim({"status": {}}) is None


@pytest.mark.parametrize("tool", ["prisma", "django"])
def test_a_fixed_table_name_cannot_be_moved(tool: str) -> None:
    with pytest.raises(SpecError, match="fixed table name"):
        parse_spec(raw(tool, versionTable={"name": "mine"}))
    assert parse_spec(raw(tool, versionTable={"schema": "app"})).version_table.schema == "app"
