"""`lockstep` command line: the operator, local mode, the kubectl plugin, and the pod commands.

The same image (and the same entry point) serves as the operator, the built-in migration runner
inside Jobs, and local mode for newcomers and CI pipelines. This module holds the parser and the
commands that run outside pods; those that run inside pods live in :mod:`lockstep.cli.run_command`
(`run`) and :mod:`lockstep.cli.pod_commands` (the others).

`lockstep COMMAND ...` builds the parser of that command alone, and imports only its module: a
Job's `lockstep run` pays neither for the other commands' parsers nor for their imports
(issue 21). Anything else (no command, `--help`, `--version`, a word that is no command) gets
the parser of every command, so help and errors list them all.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final

from lockstep import __version__, constants, url_secrets

if TYPE_CHECKING:
    from lockstep.contract.argv import Subparsers


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(words[0] if words else None)
    args = parser.parse_args(words)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    code: int = args.handler(args)
    return code


def kubectl_main() -> None:
    """Entry point of the `kubectl lockstep` plugin (its verbs live in `lockstep.plugin`)."""
    from lockstep import plugin

    plugin.run()


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command; of ``command`` alone when that names one."""
    parser = argparse.ArgumentParser(
        prog="lockstep",
        description="Database schema migrations, run the GitOps way on Kubernetes.",
    )
    parser.add_argument("--version", action="version", version=f"lockstep {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    if command in COMMANDS:
        COMMANDS[command](commands)
    else:
        for add in COMMANDS.values():
            add(commands)
    return parser


def _add_run(commands: Subparsers) -> None:
    from lockstep.cli import run_command

    run_command.add_run(commands)


def _pod_command(name: str) -> Callable[[Subparsers], None]:
    """Adds the pod command ``name`` (:mod:`lockstep.cli.pod_commands`, imported then)."""

    def add(commands: Subparsers) -> None:
        from lockstep.cli import pod_commands

        pod_commands.ADD[name](commands)

    return add


def _add_operator(commands: Subparsers) -> None:
    command = commands.add_parser("operator", help="run the operator (watches DatabaseMigrations)")
    command.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        help="watch only this namespace (repeatable); default: all namespaces",
    )
    command.add_argument(
        "-l",
        "--selector",
        default=os.environ.get("LOCKSTEP_SELECTOR", ""),
        help="act only on DatabaseMigrations with these labels, as kubectl -l "
        "(e.g. 'team=payments,shard in (a,b)'): several instances, each with its own "
        "--selector and --lease-name, can share a cluster; default: all",
    )
    command.add_argument(
        "--kubeconfig", help="kubeconfig file; default: in-cluster, then $KUBECONFIG"
    )
    command.add_argument(
        "--runner-image",
        default=os.environ.get("LOCKSTEP_RUNNER_IMAGE", constants.DEFAULT_RUNNER_IMAGE),
        help="image for built-in SQL/Alembic runs (default: %(default)s)",
    )
    command.add_argument(
        "--keep-finished-jobs",
        type=int,
        default=int(
            os.environ.get("LOCKSTEP_KEEP_FINISHED_JOBS", constants.DEFAULT_KEEP_FINISHED_JOBS)
        ),
        help="finished Jobs kept per DatabaseMigration (status keeps the history); older ones "
        "are deleted once status records them; -1 keeps all (default: %(default)s)",
    )
    command.add_argument(
        "--initial-pass-rate",
        type=float,
        default=float(
            os.environ.get("LOCKSTEP_INITIAL_PASS_RATE", constants.DEFAULT_INITIAL_PASS_RATE)
        ),
        help="full passes per second after a (re)start, jittered; 0: unpaced "
        "(default: %(default)s)",
    )
    command.add_argument(
        "--watch-secrets",
        action="store_true",
        help="list/watch Secrets (needs list/watch permission on them): passes read the Secrets "
        "DatabaseMigrations name from memory, and an edited Secret is noticed at once; without "
        "it every Secret a pass reads is a GET and an edit is noticed at the next resync",
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


def _add_apply(commands: Subparsers) -> None:
    command = commands.add_parser(
        "apply",
        help="local mode: apply the DatabaseMigrations in a YAML file without a cluster",
        formatter_class=_ApplyHelp,
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


# Each command's name and what adds its parser, in the order `lockstep --help` lists them.
COMMANDS: Final[dict[str, Callable[[Subparsers], None]]] = {
    "operator": _add_operator,
    "run": _add_run,
    "plan": _pod_command("plan"),
    "classify": _pod_command("classify"),
    "apply": _add_apply,
    "lock": _pod_command("lock"),
    "claim": _pod_command("claim"),
    "shadow-reset": _pod_command("shadow-reset"),
    "dburl": _pod_command("dburl"),
    "wait": _pod_command("wait"),
}


class _ApplyHelp(argparse.HelpFormatter):
    """`lockstep apply --help` ends with the exit codes, worded only when help is shown:
    wording them imports local mode (jsonschema, cel-python), which every other command
    (`lockstep classify` in a plan Job, say) would otherwise pay for at start-up."""

    def format_help(self) -> str:
        self.add_text(local_exit_codes())
        return super().format_help()


def local_exit_codes() -> str:
    """The exit codes of `lockstep apply`, for its --help (worded once, in cli.local)."""
    from lockstep.cli import local

    return local.EXIT_CODES_HELP


def _operator(args: argparse.Namespace) -> int:
    from lockstep import kube, logs
    from lockstep.controller import lease_rules, main, scope, webhook

    logs.configure(args.log_format, args.verbose)
    try:
        election = lease_rules.ElectionConfig(
            lease_name=args.lease_name,
            namespace=args.lease_namespace or kube.default_namespace(),
            lease_duration=args.lease_duration,
            renew_deadline=args.renew_deadline,
            retry_period=args.retry_period,
        )
        selector = scope.parse(args.selector)
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
    return main.run(
        main.OperatorOptions(
            namespaces=tuple(args.namespace),
            selector=selector,
            kubeconfig=args.kubeconfig,
            runner_image=args.runner_image,
            keep_finished_jobs=args.keep_finished_jobs,
            initial_pass_rate=args.initial_pass_rate,
            watch_secrets=args.watch_secrets,
            http_port=args.http_port,
            http_host=args.http_host,
            leader_election=args.leader_election,
            election=election,
            webhook=gate_webhook,
        )
    )


def _apply(args: argparse.Namespace) -> int:
    from lockstep.cli import local

    try:
        return local.apply_file(args.filename, args.database_url, args.state_dir, args.output)
    except BrokenPipeError:  # `lockstep apply ... | head`: the reader left, nothing to say
        return local.EXIT_NOT_READY
    except Exception as error:  # noqa: BLE001 - a bug must still not print a traceback or a URL
        text = url_secrets.scrub(f"{type(error).__name__}: {error}", args.database_url or "")
        print(
            f"error: local mode stopped unexpectedly ({text.splitlines()[0] if text else ''}): "
            "please report this with the file that caused it",
            file=sys.stderr,
        )
        return local.EXIT_NOT_READY


if __name__ == "__main__":
    sys.exit(main())
