"""The commands that run inside migration pods: `run`, `plan`, `classify`, `shadow-reset`.

Each reports through its container's termination message (a JSON result file), which the
operator reads when the Job ends; exit codes tell the main failure kinds apart as well.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from lockstep import constants, logs

if TYPE_CHECKING:
    from lockstep.pod import runner


DEFAULT_RESULT_FILE = "/dev/termination-log"
RESULT_FILE_LIMIT: Final = 4000  # bytes; Kubernetes keeps 4096 of a termination message
PLAN_SALT_HELP: Final = "the operator passes the spec hash"
# Exit codes of `lockstep run` and `lockstep plan`; the result file says the same in words.
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_PLAN_CHANGED: Final = 4
EXIT_REHEARSAL_FAILED: Final = 5
_EXIT_CODES: Final = {"PlanChanged": EXIT_PLAN_CHANGED, "RehearsalFailed": EXIT_REHEARSAL_FAILED}


def add_run(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    command = commands.add_parser(
        "run",
        help="apply built-in migrations (SQL files or Alembic scripts) to $DATABASE_URL",
        description="Runs inside migration Jobs. The database URL comes from $DATABASE_URL only, "
        "so the password never appears in a command line.",
    )
    command.add_argument("--tool", choices=["sql", "alembic"], required=True)
    command.add_argument("--source", type=Path, required=True, help="directory with the migrations")
    command.add_argument("--target", default="head", help="revision to reach (default: head)")
    command.add_argument(
        "--allow-downgrade", action="store_true", help="allow going down to --target"
    )
    command.add_argument("--lock-wait-seconds", type=float, default=600.0)
    command.add_argument(
        "--no-lock",
        action="store_true",
        help="do not take the migration lock (a `lockstep lock` sidecar in this pod holds it)",
    )
    command.add_argument("--statement-lock-timeout", default="5s")
    command.add_argument(
        "--result-file",
        default=DEFAULT_RESULT_FILE,
        help="where to write the JSON result (the container's termination message)",
    )
    approval = command.add_argument_group("approved plans and shadow rehearsal")
    approval.add_argument(
        "--plan-salt",
        metavar="SALT",
        help=f"render and classify the plan before applying, hashed with SALT ({PLAN_SALT_HELP})",
    )
    approval.add_argument(
        "--expect-plan",
        metavar="HASH",
        help=f"refuse (exit {EXIT_PLAN_CHANGED}, PlanChanged) unless the plan's hash is HASH; "
        "needs --plan-salt",
    )
    approval.add_argument(
        "--shadow-url-env",
        metavar="NAME",
        help="first rehearse on the disposable database whose URL is in $NAME (it is emptied; "
        f"exit {EXIT_REHEARSAL_FAILED}, RehearsalFailed, when the rehearsal fails)",
    )
    command.set_defaults(handler=_run)


def add_plan(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    command = commands.add_parser(
        "plan",
        help="show what `lockstep run` would execute on $DATABASE_URL, classified (read-only)",
        description="Prints the plan as JSON: the SQL files that would run, whether they are "
        "additive or destructive, and the hash `lockstep run --expect-plan` checks. Reads the "
        "database's current revision only; takes no lock.",
    )
    command.add_argument("--tool", choices=["sql", "alembic"], required=True)
    command.add_argument("--source", type=Path, required=True, help="directory with the migrations")
    command.add_argument("--target", default="head", help="revision to reach (default: head)")
    command.add_argument(
        "--salt", required=True, help=f"mixed into the plan's hash ({PLAN_SALT_HELP})"
    )
    command.add_argument(
        "--allow-downgrade", action="store_true", help="allow going down to --target"
    )
    command.add_argument(
        "--result-file",
        default=DEFAULT_RESULT_FILE,
        help="where to write the compact plan JSON (the container's termination message)",
    )
    command.set_defaults(handler=_plan)


def add_classify(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    command = commands.add_parser(
        "classify",
        help="classify SQL a migration tool printed (e.g. alembic ... --sql) into a plan",
        description="Reads the SQL file, classifies every statement and prints the plan as JSON; "
        "the plan Job of a tool in an image runs it on the SQL the tool printed.",
    )
    command.add_argument("file", type=Path, help="the SQL the tool printed")
    command.add_argument(
        "--engine", required=True, choices=["postgresql", "mysql", "mariadb", "sqlite"]
    )
    command.add_argument(
        "--salt", required=True, help=f"mixed into the plan's hash ({PLAN_SALT_HELP})"
    )
    command.add_argument("--direction", choices=["up", "down"], default="up")
    command.add_argument(
        "--direction-file", type=Path, help="a file holding the direction (overrides --direction)"
    )
    command.add_argument("--from", dest="current", help="the revision the database is at")
    command.add_argument("--to", dest="target", required=True, help="the revision to reach")
    command.add_argument(
        "--result-file",
        default=DEFAULT_RESULT_FILE,
        help="where to write the compact plan JSON (the container's termination message)",
    )
    command.set_defaults(handler=_classify)


def _classify(args: argparse.Namespace) -> int:
    from lockstep.pod import run_plan, runner

    try:
        text = args.file.read_text()
    except OSError as error:
        failure = runner.InvalidSource(f"cannot read the SQL the tool printed: {error}")
        return _failed(args.result_file, failure)
    direction = args.direction
    if args.direction_file is not None:
        direction = args.direction_file.read_text().strip() if args.direction_file.exists() else ""
        if direction not in ("up", "down"):
            failure = runner.InvalidSource(f"{args.direction_file} names no direction (up, down)")
            return _failed(args.result_file, failure)
    current = None if args.current in (None, "", "base") else args.current
    pending = runner.PendingWork(direction, current, args.target, revisions=())
    plan = run_plan.plan_from_offline_sql(text, args.engine, args.salt, pending)
    print(json.dumps(plan.to_dict(), indent=2))
    _write_result(args.result_file, plan.compact(run_plan.PLAN_RESULT_LIMIT))
    return 0


def add_shadow_reset(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    command = commands.add_parser(
        "shadow-reset",
        help="empty the shadow database in $SHADOW_DATABASE_URL (first step of a rehearsal)",
        description="Drops everything in the shadow database. Refuses when it is the database in "
        "$DATABASE_URL. Migration Jobs of tools in an image run it before rehearsing.",
    )
    command.add_argument(
        "--result-file",
        default=DEFAULT_RESULT_FILE,
        help="where to write the JSON result (the container's termination message)",
    )
    command.set_defaults(handler=_shadow_reset)


def _shadow_reset(args: argparse.Namespace) -> int:
    from lockstep import database
    from lockstep.pod import rehearsal, runner

    real = os.environ.get(constants.DATABASE_URL_ENV, "")
    shadow = os.environ.get(constants.SHADOW_DATABASE_URL_ENV, "")
    if not real or not shadow:
        message = (
            f"${constants.DATABASE_URL_ENV} and ${constants.SHADOW_DATABASE_URL_ENV} must both be "
            "set: the Job passes them from spec.database and spec.verify.shadowDatabase"
        )
        print(f"error: {message}", file=sys.stderr)
        _write_result(
            args.result_file, {"result": "Failed", "reason": "InvalidSpec", "message": message}
        )
        return 2
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        rehearsal.refuse_same_database(real, shadow)
        rehearsal.reset_database(shadow)
    except runner.RunnerError as error:
        return _failed(args.result_file, error)
    except Exception as error:  # noqa: BLE001 - any driver error, reported without the URLs
        text = database.scrub(database.scrub(f"{type(error).__name__}: {error}", shadow), real)
        failure = rehearsal.RehearsalFailed(
            f"rehearsal: resetting the shadow database failed: {text}; the real database was "
            "not touched"
        )
        return _failed(args.result_file, failure)
    print("the shadow database is empty")
    return 0


def _database_url(result_file: str) -> str | None:
    """$DATABASE_URL, or None after saying it is missing (on stderr and in the result file)."""
    url = os.environ.get(constants.DATABASE_URL_ENV)
    if not url:
        print(
            f"error: ${constants.DATABASE_URL_ENV} is not set: the Job passes it from the Secret "
            "named in spec.database.urlSecretRef",
            file=sys.stderr,
        )
        _write_result(
            result_file,
            {"result": "Failed", "reason": "InvalidSource", "message": "DATABASE_URL is not set"},
        )
    return url or None


def _run_request(args: argparse.Namespace, url: str, **options: Any) -> runner.RunRequest:
    """What `run` and `plan` share: the tool, its source, the database and the target."""
    from lockstep.pod import runner

    return runner.RunRequest(
        tool=args.tool,
        source_dir=args.source,
        database_url=url,
        target=args.target,
        allow_downgrade=args.allow_downgrade,
        **options,
    )


def _run(args: argparse.Namespace) -> int:
    from lockstep.cli import local
    from lockstep.pod import runner

    logs.configure("text", verbose=False)
    url = _database_url(args.result_file)
    if url is None:
        return EXIT_USAGE
    request = _run_request(
        args,
        url,
        lock_wait_seconds=args.lock_wait_seconds,
        statement_lock_timeout=args.statement_lock_timeout,
        take_lock=not args.no_lock,
    )
    try:
        result = runner.run(request, _checks_before_migrating(args, url))
    except runner.RunnerError as error:
        return _failed(args.result_file, error)
    print(local.describe(result))
    _write_result(args.result_file, {"result": "Succeeded", **json.loads(result.to_json())})
    return 0


def _checks_before_migrating(args: argparse.Namespace, url: str) -> list[runner.Check]:
    """The plan check (--plan-salt, --expect-plan), then the rehearsal (--shadow-url-env)."""
    from lockstep.pod import rehearsal, run_plan, runner

    checks: list[runner.Check] = []
    if args.expect_plan and args.plan_salt is None:
        raise runner.InvalidRequest("--expect-plan needs --plan-salt: the plan's hash covers it")
    if args.plan_salt is not None:
        checks.append(run_plan.plan_check(args.plan_salt, args.expect_plan))
    if args.shadow_url_env:
        shadow_url = os.environ.get(args.shadow_url_env)
        if not shadow_url:
            raise runner.InvalidRequest(
                f"${args.shadow_url_env} is not set: --shadow-url-env names the environment "
                f"variable that holds the shadow database URL"
            )
        checks.append(rehearsal.rehearsal_check(shadow_url, url))
    return checks


def _plan(args: argparse.Namespace) -> int:
    from lockstep.pod import run_plan, runner

    logs.configure("text", verbose=False)
    url = _database_url(args.result_file)
    if url is None:
        return EXIT_USAGE
    request = _run_request(args, url)
    try:
        plan = run_plan.render_plan(request, salt=args.salt)
    except runner.RunnerError as error:
        return _failed(args.result_file, error)
    print(json.dumps(plan.to_dict(), indent=2))
    _write_result(args.result_file, plan.compact(run_plan.PLAN_RESULT_LIMIT))
    return 0


def _failed(result_file: str, error: runner.RunnerError) -> int:
    """Say why on stderr and in the result file; the exit code tells some reasons apart."""
    from lockstep.pod import run_plan

    print(f"error ({error.reason}): {error}", file=sys.stderr)
    payload: dict[str, object] = {
        "result": "Failed",
        "reason": error.reason,
        "message": str(error)[:1500],
    }
    if isinstance(error, run_plan.PlanChanged):
        # The new plan, so that it can be shown for approval without another plan Job.
        payload["plan"] = error.plan.compact(run_plan.PLAN_IN_RUN_RESULT_LIMIT)
    _write_result(result_file, payload)
    return _EXIT_CODES.get(error.reason, EXIT_FAILED)


def _write_result(path: str, payload: dict[str, object]) -> None:
    """Best effort: outside a pod there is no termination log, and that is fine."""
    with contextlib.suppress(OSError):
        Path(path).write_text(_result_text(payload))


def _result_text(payload: dict[str, object]) -> str:
    """Compact JSON within :data:`RESULT_FILE_LIMIT`; a long message is cut, never the JSON.

    ``json.dumps`` escapes non-ASCII characters, so characters and bytes count alike.
    """
    text = json.dumps(payload, separators=(",", ":"))
    message = payload.get("message")
    while len(text) > RESULT_FILE_LIMIT and isinstance(message, str) and message:
        message = message[: max(0, len(message) - (len(text) - RESULT_FILE_LIMIT) - 3)]
        text = json.dumps({**payload, "message": message + "..."}, separators=(",", ":"))
    return text
