"""The commands that run inside pods: `run`, `plan`, `classify`, `shadow-reset`, `lock`,
`dburl`, `wait`.

Their arguments are defined once, in :mod:`lockstep.contract` (the operator writes the same
objects into its Jobs). `run`, `plan`, `classify` and `shadow-reset` report through their
container's termination message (a JSON result file, see :mod:`lockstep.contract.report`),
which the operator reads when the Job ends; exit codes tell the main failure kinds apart as well.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lockstep import constants, db_connection, errors, logs, url_secrets
from lockstep.contract import argv, helper_args, migration_args, report

if TYPE_CHECKING:
    from collections.abc import Sequence

    from lockstep.classify.findings import Questions
    from lockstep.classify.live import LiveSchema
    from lockstep.pod import graceful_stop, run_request, runner


# runner.run or pg_run.run: (request, checks, stop) -> result.
Runner = Callable[
    ["run_request.RunRequest", "Sequence[runner.Check]", "graceful_stop.GracefulStop"],
    "run_request.RunResult",
]


def add_run(commands: argv.Subparsers) -> None:
    argv.add_command(commands, migration_args.RunArgs).set_defaults(handler=_run)


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


# --------------------------------------------------------------------------- migrating, planning


def _run(namespace: argparse.Namespace) -> int:
    from lockstep.pod import graceful_stop

    args = argv.from_namespace(migration_args.RunArgs, namespace)
    logs.configure("text", verbose=False)
    url = _database_url(args.result_file)
    if url is None:
        return report.EXIT_USAGE
    lock_wait = args.lock_wait_seconds
    timeout = args.statement_lock_timeout
    request = _run_request(
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
        return _failed(args.result_file, graceful_stop.before_migrating(stop))
    except errors.LockstepError as error:
        return _failed(args.result_file, error)
    print(result.summary())
    _write_result(args.result_file, {"result": "Succeeded", **json.loads(result.to_json())})
    return 0


def _runner(tool: str) -> Runner:
    """pg_run for tool sql: on PostgreSQL it starts without SQLAlchemy (issue 21), and hands
    every other database to runner.run; runner for Alembic (which needs SQLAlchemy anyway)."""
    if tool == "sql":
        from lockstep.pod import pg_run

        return pg_run.run
    from lockstep.pod import runner

    return runner.run


def _run_request(
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


def _plan(namespace: argparse.Namespace) -> int:
    from lockstep.pod import run_plan

    args = argv.from_namespace(migration_args.PlanArgs, namespace)
    logs.configure("text", verbose=False)
    url = _database_url(args.result_file)
    if url is None:
        return report.EXIT_USAGE
    request = _run_request(args, url)
    try:
        plan = run_plan.render_plan(request, salt=args.salt)
    except errors.LockstepError as error:
        return _failed(args.result_file, error)
    print(json.dumps(plan.to_dict(), indent=2))
    _write_result(args.result_file, plan.compact(report.PLAN_BUDGET))
    return 0


def _classify(namespace: argparse.Namespace) -> int:
    from lockstep.pod import plan_model  # not run_plan: no Alembic or SQLAlchemy on this path

    args = argv.from_namespace(migration_args.ClassifyArgs, namespace)
    try:
        text = args.file.read_text()
    except OSError as error:
        failure = errors.InvalidSource(f"cannot read the SQL the tool printed: {error}")
        return _failed(args.result_file, failure)
    direction = args.direction
    if args.direction_file is not None:
        direction = args.direction_file.read_text().strip() if args.direction_file.exists() else ""
        if direction not in ("up", "down"):
            failure = errors.InvalidSource(f"{args.direction_file} names no direction (up, down)")
            return _failed(args.result_file, failure)
    current = None if args.current in (None, "", "base") else args.current
    pending = plan_model.PendingWork(direction, current, args.target, revisions=())  # type: ignore[arg-type]
    url = os.environ.get(constants.DATABASE_URL_ENV, "")
    plan = plan_model.plan_from_offline_sql(
        text, args.engine, args.salt, pending, _live_schema_reader(url) if url else None
    )
    print(json.dumps(plan.to_dict(), indent=2))
    _write_result(args.result_file, plan.compact(report.PLAN_BUDGET))
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
    real = _environ_url() or ""
    shadow = os.environ.get(constants.SHADOW_DATABASE_URL_ENV, "")
    if not real or not shadow:
        message = (
            f"${constants.DATABASE_URL_ENV} and ${constants.SHADOW_DATABASE_URL_ENV} must both be "
            "set: the Job passes them from spec.database and spec.verify.shadowDatabase"
        )
        print(f"error: {message}", file=sys.stderr)
        _write_result(args.result_file, report.failure("InvalidSpec", message))
        return 2
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        rehearsal.refuse_same_database(real, shadow)
        rehearsal.reset_database(shadow)
    except errors.LockstepError as error:
        return _failed(args.result_file, error)
    except Exception as error:  # noqa: BLE001 - any driver error, reported without the URLs
        text = url_secrets.scrub(
            url_secrets.scrub(f"{type(error).__name__}: {error}", shadow), real
        )
        failure = rehearsal.RehearsalFailed(
            f"rehearsal: resetting the shadow database failed: {text}; the real database was "
            "not touched"
        )
        return _failed(args.result_file, failure)
    print("the shadow database is empty")
    return 0


def _environ_url() -> str | None:
    """The pod's database URL: $DATABASE_URL, or composed from the split `LOCKSTEP_DB_*` parts
    (spec.database.connection), with the driver parameters the Job adds (TLS files)."""
    return db_connection.url_from_environ(os.environ)


def _database_url(result_file: str) -> str | None:
    """The pod's database URL, or None after saying why not (on stderr and in the result file)."""
    try:
        url = _environ_url()
        problem = "DATABASE_URL is not set"
    except db_connection.ConnectionSpecError as error:
        url, problem = None, str(error)
    if not url:
        print(
            f"error: {problem}: the Job passes the database from the Secret named in "
            "spec.database.urlSecretRef or spec.database.connection",
            file=sys.stderr,
        )
        _write_result(result_file, report.failure("InvalidSource", problem))
    return url or None


def _failed(result_file: str, error: errors.LockstepError) -> int:
    """Say why on stderr and in the result file; the exit code tells some reasons apart."""
    message = _without_secrets(str(error))
    print(f"error ({error.reason}): {message}", file=sys.stderr)
    payload = report.failure(error.reason, message)
    # Only a run that checked its plan imported run_plan (and SQLAlchemy with it): a failure
    # of any other run need not load them to know it is no PlanChanged.
    run_plan = sys.modules.get("lockstep.pod.run_plan")
    if run_plan is not None and isinstance(error, run_plan.PlanChanged):
        # The new plan, so that it can be shown for approval without another plan Job.
        payload["plan"] = error.plan.compact(report.HALF_BUDGET)
    _write_result(result_file, payload)
    return report.EXIT_CODES.get(error.reason, report.EXIT_FAILED)


def _without_secrets(text: str) -> str:
    """``text`` scrubbed of the pod's database passwords, whatever code worded it.

    The last gate before stderr and the termination message (so status and Events): a message
    built anywhere below may quote a URL or a driver's words, and only here are both URLs known.
    """

    with contextlib.suppress(db_connection.ConnectionSpecError):
        composed = _environ_url()
        if composed:
            text = url_secrets.scrub(text, composed)
    for name in (constants.DATABASE_URL_ENV, constants.SHADOW_DATABASE_URL_ENV):
        url = os.environ.get(name)
        if url:
            text = url_secrets.scrub(text, url)
    password = os.environ.get(db_connection.PASSWORD_ENV)
    if password:
        # The composed URL's scrub hides its encoded forms; the raw value, whatever its length.
        text = text.replace(password, url_secrets.REDACTED)
    return text


def _write_result(path: str, payload: Mapping[str, Any]) -> None:
    """Best effort: outside a pod there is no termination log, and that is fine."""
    with contextlib.suppress(OSError):
        Path(path).write_text(report.message_text(payload))


# --------------------------------------------------------------------------- helpers of a Job


def _lock(namespace: argparse.Namespace) -> int:
    args = argv.from_namespace(helper_args.LockArgs, namespace)
    if args.probe:
        # The startup probe runs every second while a pod waits for the lock: it only looks for
        # the file the holder writes, without importing SQLAlchemy (0.2 s of CPU per probe).
        return 0 if args.ready_file.exists() else 1
    from lockstep.pod import lock_sidecar

    url = _helper_url()
    if url is None:
        return 2
    logging.basicConfig(level=logging.INFO)
    wait = helper_args.LOCK_WAIT_SECONDS if args.wait_seconds is None else args.wait_seconds
    try:
        return lock_sidecar.hold(url, wait, args.ready_file)
    except errors.LockstepError as error:  # a bad URL, an unreachable server: say so, no traceback
        print(f"error ({error.reason}): {_without_secrets(str(error))}", file=sys.stderr)
        return 2


def _helper_url() -> str | None:
    """The URL for `lock` and `dburl`, or None after saying on stderr what is missing."""
    try:
        url = _environ_url()
    except db_connection.ConnectionSpecError as error:
        print(f"error: {error}", file=sys.stderr)
        return None
    if not url:
        print(f"error: ${constants.DATABASE_URL_ENV} is not set", file=sys.stderr)
    return url or None


def _claim(namespace: argparse.Namespace) -> int:
    from lockstep.pod import history_owners

    args = argv.from_namespace(helper_args.ClaimArgs, namespace)
    url = _database_url(args.result_file)
    if url is None:
        return report.EXIT_USAGE
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        shown = history_owners.claim_url(
            url, args.owner, args.tool, args.version_table, args.version_table_schema
        )
    except errors.LockstepError as error:
        return _failed(args.result_file, error)
    print(f"{args.owner} records its {args.tool} migrations in {shown}")
    return 0


def _dburl(namespace: argparse.Namespace) -> int:
    from lockstep.pod import url_formats

    args = argv.from_namespace(helper_args.DburlArgs, namespace)
    url = _helper_url()
    if url is None:
        return 2
    try:
        env = url_formats.env_for(args.format, url)
    except (ValueError, errors.InvalidDatabaseUrl) as error:
        print(f"error: {_without_secrets(str(error))}", file=sys.stderr)
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
