"""The operator's command lines are the pod's: every `lockstep` command a Job can hold parses.

The command lines come from the real Job builders (every tool, both directions, with and without
an approved plan, plans, rehearsals, the lock sidecar and its probe, the URL converter) and are
parsed by the real pod CLI (:func:`lockstep.cli.main.build_parser`), which must give back the
typed arguments the operator rendered. The termination message's budget is checked here too.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lockstep import constants, errors, tools
from lockstep.cli import main as cli_main
from lockstep.contract import argv, commands, helper_args, migration_args, report
from lockstep.jobs import containers, job_spec, naming, plan_pod, rehearsal
from lockstep.model import TOOLS, Spec, parse_spec

OWNER = naming.Owner(name="shop", namespace="shop", uid="1234-5678")
HASH = "a1b2c3d4e5f6" + "0" * 52
RUNNER_IMAGE = "ghcr.io/lockstep-dev/lockstep:0.1.0"
DATABASE = {"engine": "postgresql", "urlSecretRef": {"name": "shop-db", "key": "url"}}
SHADOW = {"shadowDatabase": {"urlSecretRef": {"name": "shop-shadow", "key": "url"}}}


def spec_of(tool: str, *, downgrade: bool, shadow: bool, in_image: bool = False) -> Spec:
    raw: dict[str, Any] = {
        "tool": tool,
        "database": DATABASE,
        "downgrade": "Allow" if downgrade else "Forbid",
        "timeouts": {"lockWaitSeconds": 120, "statementLockTimeout": "3s"},
    }
    if tool in ("sql", "alembic") and not in_image:
        raw["source"] = {"configMapRef": {"name": "shop-migrations"}}
    else:
        raw["image"] = "shop:1.5"
    if shadow:
        raw["verify"] = SHADOW
    return parse_spec(raw)


def requests() -> Iterator[naming.JobRequest]:
    for downgrade in (False, True):
        for plan in (None, "salt", "approved"):
            yield naming.JobRequest(
                attempt=1,
                target="2",
                downgrade=downgrade,
                image="shop:1.4" if downgrade else None,
                plan_salt=naming.plan_salt(HASH) if plan else "",
                expect_plan="0123456789abcdef" if plan == "approved" else None,
                database_at="3" if downgrade else "1",
            )
        yield naming.JobRequest(
            attempt=0,
            target="2",
            downgrade=downgrade,
            phase=constants.PHASE_PLAN,
            plan_salt=naming.plan_salt(HASH),
            database_at="1",
        )


def lockstep_commands(job: dict[str, Any]) -> Iterator[tuple[str, ...]]:
    """Every `lockstep ...` command line in a Job: containers, init containers, probes."""
    pod = job["spec"]["template"]["spec"]
    for container in [*pod.get("initContainers", []), *pod["containers"]]:
        command = tuple(container.get("command") or ())
        if command[:1] == (argv.PROGRAM,):
            yield command
        probe = container.get("startupProbe", {}).get("exec", {}).get("command") or []
        if probe[:1] == [argv.PROGRAM]:
            yield tuple(probe)


def buildable(spec: Spec, request: naming.JobRequest) -> bool:
    """Whether the operator builds this Job (it refuses the others before any Job)."""
    if request.is_plan:
        return plan_pod.can_render_plan(spec)
    problems = (
        containers.command_problem(spec, request),
        rehearsal.rehearsal_problem(spec, request),
    )
    return problems == (None, None)


def jobs_commands() -> Iterator[tuple[str, tuple[str, ...]]]:
    # Every tool, and Alembic from the user's image as well as from a ConfigMap.
    variants = [*((tool, False) for tool in TOOLS), ("alembic", True)]
    for tool, in_image in variants:
        for downgrade in (False, True):
            for shadow in (False, True):
                spec = spec_of(tool, downgrade=downgrade, shadow=shadow, in_image=in_image)
                for request in requests():
                    label = f"{tool}-{'down' if request.downgrade else 'up'}-{request.phase}"
                    if not buildable(spec, request):
                        continue
                    job = job_spec.build_job(OWNER, spec, HASH, request, "dbkey", RUNNER_IMAGE)
                    for command in lockstep_commands(job):
                        yield label, command


ALL_COMMANDS = sorted(set(jobs_commands()))


def parse_with_the_pod_cli(command: tuple[str, ...]) -> commands.PodCommandArgs:
    namespace = cli_main.build_parser().parse_args(list(command[1:]))
    return commands.from_namespace(namespace)


def test_the_jobs_hold_every_pod_command() -> None:
    seen = {command[1] for _, command in ALL_COMMANDS}
    assert seen == {"run", "plan", "classify", "shadow-reset", "lock", "dburl"}


@pytest.mark.parametrize(("label", "command"), ALL_COMMANDS)
def test_every_command_a_job_holds_parses_back_to_the_same_arguments(
    label: str, command: tuple[str, ...]
) -> None:
    parsed = parse_with_the_pod_cli(command)
    assert parsed.to_argv() == command, label
    assert commands.parse(command) == parsed
    assert parse_with_the_pod_cli(parsed.to_argv()) == parsed


@pytest.mark.parametrize("downgrade", [False, True])
def test_the_sql_adapter_commands_parse_back(downgrade: bool) -> None:
    adapter = tools.get_adapter("sql")
    command = tuple(
        adapter.downgrade_command("1") if downgrade else adapter.upgrade_command("head")
    )
    assert parse_with_the_pod_cli(command) == migration_args.RunArgs(
        tool="sql",
        source=Path(tools.base.BUILTIN_SOURCE_DIR),
        target="1" if downgrade else "head",
        allow_downgrade=downgrade,
    )


def test_wait_round_trips_through_the_pod_cli() -> None:
    args = helper_args.WaitArgs(migration="shop", image="shop:1.5", namespace="apps", timeout=30)
    assert args.to_argv() == (
        "lockstep", "wait", "--for", "shop", "--image", "shop:1.5", "--namespace", "apps",
        "--timeout", "30",
    )  # fmt: skip
    assert parse_with_the_pod_cli(args.to_argv()) == args


def test_the_command_lines_are_the_ones_jobs_always_had() -> None:
    spec = spec_of("sql", downgrade=True, shadow=True)
    request = naming.JobRequest(attempt=0, target="2", plan_salt="salt", expect_plan="abc")
    assert containers.runner_command(spec, request) == (
        "lockstep", "run", "--tool", "sql", "--source", "/migrations", "--target", "2",
        "--lock-wait-seconds", "120", "--statement-lock-timeout", "3s", "--no-lock",
        "--allow-downgrade", "--plan-salt", "salt", "--expect-plan", "abc",
        "--shadow-url-env", "SHADOW_DATABASE_URL",
    )  # fmt: skip
    sidecar = containers.lock_sidecar(spec, RUNNER_IMAGE)
    assert sidecar["command"] == [
        "lockstep", "lock", "--wait-seconds", "120", "--ready-file", "/run/lockstep/locked",
    ]  # fmt: skip
    assert sidecar["startupProbe"]["exec"]["command"] == [
        "lockstep", "lock", "--probe", "--ready-file", "/run/lockstep/locked",
    ]  # fmt: skip
    flyway = spec_of("flyway", downgrade=False, shadow=False)
    assert containers.env_container(flyway, "flyway", RUNNER_IMAGE)["command"] == [
        "lockstep", "dburl", "--format", "flyway", "--out", "/lockstep/env",
    ]  # fmt: skip


def test_a_command_that_is_not_a_pod_command_is_refused() -> None:
    namespace = cli_main.build_parser().parse_args(["apply", "-f", "x.yaml"])
    with pytest.raises(commands.UnknownCommandError):
        commands.from_namespace(namespace)


# --------------------------------------------------------------------------- the report budget


def test_the_budget_fits_a_termination_message() -> None:
    assert report.BUDGET < report.TERMINATION_MESSAGE_BYTES
    assert report.PLAN_BUDGET < report.RESULT_BUDGET < report.BUDGET
    assert 2 * report.HALF_BUDGET < report.RESULT_BUDGET


def test_an_oversized_failure_is_clipped_to_the_budget_and_stays_json() -> None:
    message = "é" * 2000 + "\n" + "x" * 10_000  # non-ASCII: escaped, six bytes each
    payload = {**report.failure("MigrationFailed", message), "plan": {"hash": "0123"}}
    text = report.message_text(payload)
    assert len(text.encode()) <= report.TERMINATION_MESSAGE_BYTES
    parsed = report.parse(text)
    assert parsed["result"] == "Failed"
    assert parsed["reason"] == "MigrationFailed"
    assert parsed["message"].endswith("...")
    assert parsed["plan"] == {"hash": "0123"}


def test_a_report_parses_back_and_anything_else_is_empty() -> None:
    written = report.message_text({"result": "Succeeded", "applied": ["1"], "from": None})
    assert report.parse(written) == {"result": "Succeeded", "applied": ["1"], "from": None}
    assert report.parse("Traceback (most recent call last): ...") == {}
    assert report.parse(json.dumps([1, 2])) == {}


def test_errors_of_a_run_are_lockstep_errors() -> None:
    for error in (errors.InvalidSource, errors.MigrationFailed, errors.PartiallyApplied):
        assert issubclass(error, errors.LockstepError)
