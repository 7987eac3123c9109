"""The commands that run inside pods besides `run` (:mod:`lockstep.cli.run_command`): `plan`,
`classify`, `shadow-reset`, `lock`, `claim`, `dburl`, `wait`.

Their arguments are defined once, in :mod:`lockstep.contract` (the operator writes the same
objects into its Jobs). `plan`, `classify` and `shadow-reset` report through their
container's termination message (a JSON result file, see :mod:`lockstep.contract.report`),
which the operator reads when the Job ends; exit codes tell the main failure kinds apart as well.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from lockstep import constants, errors, logs, url_secrets
from lockstep.cli import pod_reporting, run_command
from lockstep.contract import argv, helper_args, migration_args, report

if TYPE_CHECKING:
    from lockstep.classify.findings import Questions
    from lockstep.classify.live import LiveSchema


def add_plan(commands: argv.Subparsers) -> None:
    argv.add_command(commands, migration_args.PlanArgs).set_defaults(handler=_plan)


def add_classify(commands: argv.Subparsers) -> None:
    argv.add_command(commands, migration_args.ClassifyArgs).set_defaults(handler=_classify)


def add_shadow_reset(commands: argv.Subparsers) -> None:
    command = argv.add_command(commands, migration_args.ShadowResetArgs)
    command.set_defaults(handler=_shadow_reset)


def add_lock(commands: argv.Subparsers) -> None:
    argv.add_command(commands, helper_args.LockArgs).set_defaults(handler=_lock)


def add_claim(commands: argv.Subparsers) -> None:
    argv.add_command(commands, helper_args.ClaimArgs).set_defaults(handler=_claim)


def add_dburl(commands: argv.Subparsers) -> None:
    argv.add_command(commands, helper_args.DburlArgs).set_defaults(handler=_dburl)


def add_wait(commands: argv.Subparsers) -> None:
    argv.add_command(commands, helper_args.WaitArgs).set_defaults(handler=_wait)


# What adds each command's parser, by the command's name (lockstep.cli.main picks one).
ADD: Final[dict[str, Callable[[argv.Subparsers], None]]] = {
    migration_args.PlanArgs.COMMAND: add_plan,
    migration_args.ClassifyArgs.COMMAND: add_classify,
    migration_args.ShadowResetArgs.COMMAND: add_shadow_reset,
    helper_args.LockArgs.COMMAND: add_lock,
    helper_args.ClaimArgs.COMMAND: add_claim,
    helper_args.DburlArgs.COMMAND: add_dburl,
    helper_args.WaitArgs.COMMAND: add_wait,
}


# --------------------------------------------------------------------------- planning


def _plan(namespace: argparse.Namespace) -> int:
    from lockstep.pod import run_plan

    args = argv.from_namespace(migration_args.PlanArgs, namespace)
    logs.configure("text", verbose=False)
    url = pod_reporting.database_url(args.result_file)
    if url is None:
        return report.EXIT_USAGE
    request = run_command.build_run_request(args, url)
    try:
        plan = run_plan.render_plan(request, salt=args.salt)
    except errors.LockstepError as error:
        return pod_reporting.failed(args.result_file, error)
    print(json.dumps(plan.to_dict(), indent=2))
    pod_reporting.write_result(args.result_file, plan.compact(report.PLAN_BUDGET))
    return 0


def _classify(namespace: argparse.Namespace) -> int:
    from lockstep.pod import plan_model  # not run_plan: no Alembic or SQLAlchemy on this path

    args = argv.from_namespace(migration_args.ClassifyArgs, namespace)
    try:
        text = args.file.read_text()
    except OSError as error:
        failure = errors.InvalidSource(f"cannot read the SQL the tool printed: {error}")
        return pod_reporting.failed(args.result_file, failure)
    direction = args.direction
    if args.direction_file is not None:
        direction = args.direction_file.read_text().strip() if args.direction_file.exists() else ""
        if direction not in ("up", "down"):
            failure = errors.InvalidSource(f"{args.direction_file} names no direction (up, down)")
            return pod_reporting.failed(args.result_file, failure)
    current = None if args.current in (None, "", "base") else args.current
    pending = plan_model.PendingWork(direction, current, args.target, revisions=())  # type: ignore[arg-type]
    url = os.environ.get(constants.DATABASE_URL_ENV, "")
    plan = plan_model.plan_from_offline_sql(
        text, args.engine, args.salt, pending, _live_schema_reader(url) if url else None
    )
    print(json.dumps(plan.to_dict(), indent=2))
    pod_reporting.write_result(args.result_file, plan.compact(report.PLAN_BUDGET))
    return 0


def _live_schema_reader(url: str) -> Callable[[Questions], LiveSchema]:
    """Reads the live columns and facts only when called: SQLAlchemy and the driver load
    then, not at the start of every `lockstep classify`."""

    def read(questions: Questions) -> LiveSchema:
        from lockstep.pod import live_schema

        return live_schema.read_url(url, questions)

    return read


def _shadow_reset(namespace: argparse.Namespace) -> int:
    from lockstep.pod import rehearsal

    args = argv.from_namespace(migration_args.ShadowResetArgs, namespace)
    real = pod_reporting.environ_url() or ""
    shadow = os.environ.get(constants.SHADOW_DATABASE_URL_ENV, "")
    if not real or not shadow:
        message = (
            f"${constants.DATABASE_URL_ENV} and ${constants.SHADOW_DATABASE_URL_ENV} must both be "
            "set: the Job passes them from spec.database and spec.verify.shadowDatabase"
        )
        print(f"error: {message}", file=sys.stderr)
        pod_reporting.write_result(args.result_file, report.failure("InvalidSpec", message))
        return 2
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        rehearsal.refuse_same_database(real, shadow)
        rehearsal.reset_database(shadow)
    except errors.LockstepError as error:
        return pod_reporting.failed(args.result_file, error)
    except Exception as error:  # noqa: BLE001 - any driver error, reported without the URLs
        text = url_secrets.scrub(
            url_secrets.scrub(f"{type(error).__name__}: {error}", shadow), real
        )
        failure = rehearsal.RehearsalFailed(
            f"rehearsal: resetting the shadow database failed: {text}; the real database was "
            "not touched"
        )
        return pod_reporting.failed(args.result_file, failure)
    print("the shadow database is empty")
    return 0


# --------------------------------------------------------------------------- helpers of a Job


def _lock(namespace: argparse.Namespace) -> int:
    args = argv.from_namespace(helper_args.LockArgs, namespace)
    if args.probe:
        # The startup probe runs every second while a pod waits for the lock: it only looks for
        # the file the holder writes, without importing SQLAlchemy (0.2 s of CPU per probe).
        return 0 if args.ready_file.exists() else 1
    from lockstep.pod import lock_sidecar

    url = pod_reporting.helper_url()
    if url is None:
        return 2
    logging.basicConfig(level=logging.INFO)
    wait = helper_args.LOCK_WAIT_SECONDS if args.wait_seconds is None else args.wait_seconds
    try:
        return lock_sidecar.hold(url, wait, args.ready_file)
    except errors.LockstepError as error:  # a bad URL, an unreachable server: say so, no traceback
        print(
            f"error ({error.reason}): {pod_reporting.without_secrets(str(error))}", file=sys.stderr
        )
        return 2


def _claim(namespace: argparse.Namespace) -> int:
    from lockstep.pod import history_owners

    args = argv.from_namespace(helper_args.ClaimArgs, namespace)
    url = pod_reporting.database_url(args.result_file)
    if url is None:
        return report.EXIT_USAGE
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        shown = history_owners.claim_url(
            url, args.owner, args.tool, args.version_table, args.version_table_schema
        )
    except errors.LockstepError as error:
        return pod_reporting.failed(args.result_file, error)
    print(f"{args.owner} records its {args.tool} migrations in {shown}")
    return 0


def _dburl(namespace: argparse.Namespace) -> int:
    from lockstep.pod import url_formats

    args = argv.from_namespace(helper_args.DburlArgs, namespace)
    url = pod_reporting.helper_url()
    if url is None:
        return 2
    try:
        env = url_formats.env_for(args.format, url)
    except (ValueError, errors.InvalidDatabaseUrl) as error:
        print(f"error: {pod_reporting.without_secrets(str(error))}", file=sys.stderr)
        return 2
    partial = args.out.with_name(f".{args.out.name}.partial")
    # Created with its final mode: the password is never readable by others, even briefly.
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    with os.fdopen(descriptor, "w") as output:
        output.write(url_formats.render_env_file(env))
    partial.replace(args.out)  # atomic: the migrate container never reads half a file
    print(f"wrote {url_formats.describe(env)} to {args.out}")
    return 0


def _wait(namespace: argparse.Namespace) -> int:
    from lockstep.pod import wait

    args = argv.from_namespace(helper_args.WaitArgs, namespace)
    image = args.image or os.environ.get("LOCKSTEP_IMAGE")
    return wait.wait_for_migration(
        args.migration, image, args.namespace, args.timeout, args.interval, args.kubeconfig
    )
