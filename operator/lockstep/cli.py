"""`lockstep` command line: operator | run | plan | apply.

The same image (and the same entry point) serves as the operator, the built-in migration runner
inside Jobs, and local mode for newcomers and CI pipelines.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final

from lockstep import __version__, constants, logs

if TYPE_CHECKING:
    from lockstep import runner

DEFAULT_RESULT_FILE = "/dev/termination-log"
RESULT_FILE_LIMIT: Final = 4000  # bytes; Kubernetes keeps 4096 of a termination message
PLAN_SALT_HELP: Final = "the operator passes the spec hash"
# Exit codes of `lockstep run` and `lockstep plan`; the result file says the same in words.
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_PLAN_CHANGED: Final = 4
EXIT_REHEARSAL_FAILED: Final = 5
_EXIT_CODES: Final = {"PlanChanged": EXIT_PLAN_CHANGED, "RehearsalFailed": EXIT_REHEARSAL_FAILED}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    code: int = args.handler(args)
    return code


def kubectl_main() -> None:
    """Entry point of the `kubectl lockstep` plugin (its verbs live in `lockstep.plugin`)."""
    from lockstep import plugin

    sys.exit(plugin.main(sys.argv[1:]))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lockstep",
        description="Database schema migrations, run the GitOps way on Kubernetes.",
    )
    parser.add_argument("--version", action="version", version=f"lockstep {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_operator(commands)
    _add_run(commands)
    _add_plan(commands)
    _add_classify(commands)
    _add_apply(commands)
    _add_lock(commands)
    _add_shadow_reset(commands)
    _add_dburl(commands)
    _add_wait(commands)
    return parser


def _add_operator(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    command = commands.add_parser("operator", help="run the operator (watches DatabaseMigrations)")
    command.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        help="watch only this namespace (repeatable); default: all namespaces",
    )
    command.add_argument(
        "--kubeconfig", help="kubeconfig file; default: in-cluster, then $KUBECONFIG"
    )
    command.add_argument(
        "--runner-image",
        default=os.environ.get("LOCKSTEP_RUNNER_IMAGE", constants.DEFAULT_RUNNER_IMAGE),
        help="image for built-in SQL/Alembic runs (default: %(default)s)",
    )
    command.add_argument("--http-port", type=int, default=8080, help="/healthz and /metrics port")
    command.add_argument(
        "--http-host",
        default="0.0.0.0",  # noqa: S104 - probes and scrapes come from outside the pod
        help="address for /healthz, /readyz, /metrics",
    )
    gate_options = command.add_argument_group("rollout gate webhook (served by every replica)")
    gate_options.add_argument(
        "--webhook-port", type=int, default=9443, help="TLS port of the gate webhook; 0: off"
    )
    gate_options.add_argument(
        "--webhook-host",
        default="0.0.0.0",  # noqa: S104 - the API server calls in from outside the pod
        help="address the webhook listens on",
    )
    gate_options.add_argument("--webhook-secret", default="lockstep-webhook-tls")
    gate_options.add_argument("--webhook-service", default="lockstep-webhook")
    gate_options.add_argument("--webhook-configuration", default="lockstep-gate")
    gate_options.add_argument(
        "--webhook-url",
        default=None,
        help="development: register the webhook at this URL (the operator runs off-cluster)",
    )
    election = command.add_argument_group("leader election (Lease)")
    election.add_argument(
        "--leader-election",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="reconcile only while holding the Lease (default: on)",
    )
    election.add_argument("--lease-name", default="lockstep-leader")
    election.add_argument(
        "--lease-namespace", default=None, help="default: $POD_NAMESPACE or the pod's namespace"
    )
    election.add_argument("--lease-duration", type=float, default=15.0, help="seconds")
    election.add_argument("--renew-deadline", type=float, default=10.0, help="seconds")
    election.add_argument("--retry-period", type=float, default=2.0, help="seconds")
    command.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    command.add_argument(
        "--log-format",
        choices=["json", "text"],
        default=os.environ.get("LOCKSTEP_LOG_FORMAT", "json"),
        help="json: one object per line (default); text: for a terminal",
    )
    command.set_defaults(handler=_operator)


def _add_run(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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


def _add_plan(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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


def _add_classify(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    from lockstep import migration_plan, runner

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
    plan = migration_plan.plan_from_offline_sql(text, args.engine, args.salt, pending)
    print(json.dumps(plan.to_dict(), indent=2))
    _write_result(args.result_file, plan.compact(migration_plan.PLAN_RESULT_LIMIT))
    return 0


def _add_apply(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    command = commands.add_parser(
        "apply",
        help="local mode: apply the DatabaseMigrations in a YAML file without a cluster",
    )
    command.add_argument(
        "-f",
        "--filename",
        type=Path,
        required=True,
        help="YAML with DatabaseMigrations and ConfigMaps",
    )
    command.add_argument(
        "--database-url",
        default=os.environ.get(constants.DATABASE_URL_ENV),
        help="database to migrate (default: $DATABASE_URL, else a SQLite file under .lockstep/)",
    )
    command.add_argument(
        "--state-dir", type=Path, default=Path(".lockstep"), help="where local SQLite files live"
    )
    command.add_argument("-o", "--output", choices=["text", "json", "yaml"], default="text")
    command.set_defaults(handler=_apply)


def _add_lock(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    command = commands.add_parser(
        "lock",
        help="hold the migration lock of $DATABASE_URL until stopped (the Job's lock sidecar)",
    )
    command.add_argument("--wait-seconds", type=float, default=600.0, help="give up after this")
    command.add_argument(
        "--ready-file",
        type=Path,
        default=Path("/run/lockstep/locked"),
        help="written once the lock is held (the startup probe checks it)",
    )
    command.add_argument("--probe", action="store_true", help="exit 0 if the lock is held")
    command.set_defaults(handler=_lock)


def _lock(args: argparse.Namespace) -> int:
    from lockstep import lock_sidecar

    if args.probe:
        return lock_sidecar.probe(args.ready_file)
    url = os.environ.get(constants.DATABASE_URL_ENV)
    if not url:
        print(f"error: ${constants.DATABASE_URL_ENV} is not set", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO)
    return lock_sidecar.hold(url, args.wait_seconds, args.ready_file)


def _add_shadow_reset(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    from lockstep import database, rehearsal, runner

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


def _add_wait(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    command = commands.add_parser(
        "wait",
        help="block until a DatabaseMigration is migrated for an image (init container)",
        description="The rollout gate for clusters without admission webhooks: run as the "
        "app's first init container. Needs RBAC: get on databasemigrations.lockstep.dev in "
        "the pod's namespace.",
    )
    command.add_argument("--for", dest="migration", required=True, help="DatabaseMigration name")
    command.add_argument("--image", help="the app image (default: $LOCKSTEP_IMAGE)")
    command.add_argument("-n", "--namespace", help="default: the pod's own namespace")
    command.add_argument("--timeout", type=float, default=0, help="seconds; 0 waits forever")
    command.add_argument("--interval", type=float, default=2.0, help="seconds between checks")
    command.add_argument("--kubeconfig")
    command.set_defaults(handler=_wait)


def _wait(args: argparse.Namespace) -> int:
    from lockstep import waiting

    image = args.image or os.environ.get("LOCKSTEP_IMAGE")
    return waiting.wait_for_migration(
        args.migration, image, args.namespace, args.timeout, args.interval, args.kubeconfig
    )


def _add_dburl(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    command = commands.add_parser(
        "dburl",
        help="write $DATABASE_URL as a tool's own variables (e.g. FLYWAY_URL/USER/PASSWORD)",
        description="Runs as the Job's init container for tools that cannot take a URL. The "
        "file holds the password: write it to a memory-backed volume only.",
    )
    command.add_argument("--format", required=True, help="flyway or jdbc")
    command.add_argument("--out", type=Path, required=True, help="env file to write (sourced)")
    command.set_defaults(handler=_dburl)


def _dburl(args: argparse.Namespace) -> int:
    from lockstep import database, dburl_formats

    url = os.environ.get(constants.DATABASE_URL_ENV)
    if not url:
        print(f"error: ${constants.DATABASE_URL_ENV} is not set", file=sys.stderr)
        return 2
    try:
        env = dburl_formats.env_for(args.format, url)
    except (ValueError, database.InvalidDatabaseUrl) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    partial = args.out.with_name(f".{args.out.name}.partial")
    # Created with its final mode: the password is never readable by others, even briefly.
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    with os.fdopen(descriptor, "w") as output:
        output.write(dburl_formats.render_env_file(env))
    partial.replace(args.out)  # atomic: the migrate container never reads half a file
    print(f"wrote {dburl_formats.describe(env)} to {args.out}")
    return 0


def _operator(args: argparse.Namespace) -> int:
    from lockstep import leader, logs, operator_main, webhook

    logs.configure(args.log_format, args.verbose)
    try:
        election = leader.ElectionConfig(
            lease_name=args.lease_name,
            namespace=args.lease_namespace or operator_main.default_namespace(),
            lease_duration=args.lease_duration,
            renew_deadline=args.renew_deadline,
            retry_period=args.retry_period,
        )
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    gate_webhook = None
    if args.webhook_port:
        gate_webhook = webhook.WebhookOptions(
            port=args.webhook_port,
            host=args.webhook_host,
            namespace=election.namespace,
            tls_secret=args.webhook_secret,
            service=args.webhook_service,
            configuration=args.webhook_configuration,
            url=args.webhook_url,
        )
    return operator_main.run(
        operator_main.OperatorOptions(
            namespaces=tuple(args.namespace),
            kubeconfig=args.kubeconfig,
            runner_image=args.runner_image,
            http_port=args.http_port,
            http_host=args.http_host,
            leader_election=args.leader_election,
            election=election,
            webhook=gate_webhook,
        )
    )


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


def _run(args: argparse.Namespace) -> int:
    from lockstep import local, runner

    logs.configure("text", verbose=False)
    url = _database_url(args.result_file)
    if url is None:
        return EXIT_USAGE
    request = runner.RunRequest(
        tool=args.tool,
        source_dir=args.source,
        database_url=url,
        target=args.target,
        allow_downgrade=args.allow_downgrade,
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
    from lockstep import migration_plan, rehearsal, runner

    checks: list[runner.Check] = []
    if args.expect_plan and args.plan_salt is None:
        raise runner.InvalidRequest("--expect-plan needs --plan-salt: the plan's hash covers it")
    if args.plan_salt is not None:
        checks.append(migration_plan.plan_check(args.plan_salt, args.expect_plan))
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
    from lockstep import migration_plan, runner

    logs.configure("text", verbose=False)
    url = _database_url(args.result_file)
    if url is None:
        return EXIT_USAGE
    request = runner.RunRequest(
        tool=args.tool,
        source_dir=args.source,
        database_url=url,
        target=args.target,
        allow_downgrade=args.allow_downgrade,
    )
    try:
        plan = migration_plan.render_plan(request, salt=args.salt)
    except runner.RunnerError as error:
        return _failed(args.result_file, error)
    print(json.dumps(plan.to_dict(), indent=2))
    _write_result(args.result_file, plan.compact(migration_plan.PLAN_RESULT_LIMIT))
    return 0


def _failed(result_file: str, error: runner.RunnerError) -> int:
    """Say why on stderr and in the result file; the exit code tells some reasons apart."""
    from lockstep import migration_plan

    print(f"error ({error.reason}): {error}", file=sys.stderr)
    payload: dict[str, object] = {
        "result": "Failed",
        "reason": error.reason,
        "message": str(error)[:1500],
    }
    if isinstance(error, migration_plan.PlanChanged):
        # The new plan, so that it can be shown for approval without another plan Job.
        payload["plan"] = error.plan.compact(migration_plan.PLAN_IN_RUN_RESULT_LIMIT)
    _write_result(result_file, payload)
    return _EXIT_CODES.get(error.reason, EXIT_FAILED)


def _apply(args: argparse.Namespace) -> int:
    from lockstep import local

    return local.apply_file(args.filename, args.database_url, args.state_dir, args.output)


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


if __name__ == "__main__":
    sys.exit(main())
