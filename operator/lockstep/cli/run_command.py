"""`lockstep run`, the built-in migration runner inside a Job: the request, the checks before
migrating (plan, rehearsal), the runner for the tool, and its report.

Its arguments are defined once, in :mod:`lockstep.contract` (the operator writes the same object
into its Jobs); it reports through its container's termination message (a JSON result file, see
:mod:`lockstep.contract.report`), and its exit code tells the main failure kinds apart as well.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lockstep import errors, logs
from lockstep.cli import pod_reporting
from lockstep.contract import argv, migration_args, report

if TYPE_CHECKING:
    from collections.abc import Sequence

    from lockstep.pod import graceful_stop, run_request, runner


# runner.run or pg_run.run: (request, checks, stop) -> result.
Runner = Callable[
    ["run_request.RunRequest", "Sequence[runner.Check]", "graceful_stop.GracefulStop"],
    "run_request.RunResult",
]


def add_run(commands: argv.Subparsers) -> None:
    argv.add_command(commands, migration_args.RunArgs).set_defaults(handler=_run)


def _run(namespace: argparse.Namespace) -> int:
    from lockstep.pod import graceful_stop

    args = argv.from_namespace(migration_args.RunArgs, namespace)
    logs.configure("text", verbose=False)
    url = pod_reporting.database_url(args.result_file)
    if url is None:
        return report.EXIT_USAGE
    lock_wait = args.lock_wait_seconds
    timeout = args.statement_lock_timeout
    request = build_run_request(
        args,
        url,
        lock_wait_seconds=migration_args.LOCK_WAIT_SECONDS if lock_wait is None else lock_wait,
        statement_lock_timeout=migration_args.STATEMENT_LOCK_TIMEOUT
        if timeout is None
        else timeout,
        take_lock=not args.no_lock,
    )
    # SIGTERM (pod deleted, evicted, past its deadline) cancels the running statement and is
    # reported truthfully instead of leaving the statement running on the server.
    stop = graceful_stop.GracefulStop()
    try:
        stop.install()
        result = _runner(args.tool)(request, _checks_before_migrating(args, url), stop)
    except graceful_stop.StoppedBeforeMigrating:
        return pod_reporting.failed(args.result_file, graceful_stop.before_migrating(stop))
    except errors.LockstepError as error:
        return pod_reporting.failed(args.result_file, error)
    print(result.summary())
    pod_reporting.write_result(
        args.result_file, {"result": "Succeeded", **json.loads(result.to_json())}
    )
    return 0


def _runner(tool: str) -> Runner:
    """pg_run for tool sql: on PostgreSQL it starts without SQLAlchemy (issue 21), and hands
    every other database to runner.run; runner for Alembic (which needs SQLAlchemy anyway)."""
    if tool == "sql":
        from lockstep.pod import pg_run

        return pg_run.run
    from lockstep.pod import runner

    return runner.run


def build_run_request(
    args: migration_args.RunArgs | migration_args.PlanArgs, url: str, **options: Any
) -> run_request.RunRequest:
    """What `run` and `plan` share: the tool, its source, the database and the target."""
    from lockstep.pod import run_request

    return run_request.RunRequest(
        tool=args.tool,  # type: ignore[arg-type]  # argparse allows sql and alembic only
        source_dir=args.source,
        database_url=url,
        target=args.target,
        allow_downgrade=args.allow_downgrade,
        version_table=args.version_table,
        version_table_schema=args.version_table_schema,
        owner=args.owner,
        baseline=args.baseline,
        **options,
    )


def _checks_before_migrating(args: migration_args.RunArgs, url: str) -> list[runner.Check]:
    """The plan check (--plan-salt, --expect-plan), then the rehearsal (--shadow-url-env).
    Each imported only when asked for: they load SQLAlchemy, which a run without them skips."""
    checks: list[runner.Check] = []
    if args.expect_plan and args.plan_salt is None:
        raise errors.InvalidRequest("--expect-plan needs --plan-salt: the plan's hash covers it")
    if args.plan_salt is not None:
        from lockstep.pod import run_plan

        checks.append(run_plan.plan_check(args.plan_salt, args.expect_plan))
    if args.shadow_url_env:
        from lockstep.pod import rehearsal

        shadow_url = os.environ.get(args.shadow_url_env)
        if not shadow_url:
            raise errors.InvalidRequest(
                f"${args.shadow_url_env} is not set: --shadow-url-env names the environment "
                f"variable that holds the shadow database URL"
            )
        checks.append(rehearsal.rehearsal_check(shadow_url, url))
    return checks
