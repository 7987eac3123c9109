"""`kubectl lockstep VERB`: argument parsing, and one thin function per verb.

Each verb reads objects through a `Cluster` (the client module, or a fake in tests), decides with
the pure `state` module, prints what `render` returns, and raises `errors.PluginError` for
anything a person must act on; `main` prints that as one line and exits 1.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, TextIO

from lockstep import __version__, constants
from lockstep.plugin import describe, errors, render, state


class Cluster(Protocol):
    """What the verbs need from the API (implemented by `client.KubeCluster`)."""

    server: str
    default_namespace: str

    def list_migrations(self, namespace: str | None) -> list[dict[str, Any]]: ...
    def get_migration(self, namespace: str, name: str) -> dict[str, Any]: ...
    def patch_migration(
        self, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> dict[str, Any]: ...
    def jobs_of(self, namespace: str, migration: str) -> list[dict[str, Any]]: ...
    def get_job(self, namespace: str, name: str) -> dict[str, Any]: ...
    def pods_of_job(self, namespace: str, job: str) -> list[dict[str, Any]]: ...
    def pod_log(self, namespace: str, pod: str, container: str, follow: bool) -> Iterator[str]: ...


Connect = Callable[[str | None, str | None], Cluster]


def use_color(stream: TextIO, environ: Mapping[str, str]) -> bool:
    """Colours only for a person at a terminal: stdout is a tty, NO_COLOR unset, TERM not dumb."""
    return stream.isatty() and "NO_COLOR" not in environ and environ.get("TERM") != "dumb"


@dataclass
class Terminal:
    stdin: TextIO = field(default_factory=lambda: sys.stdin)
    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)
    color: bool = False
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    def out(self, text: str) -> None:
        self.stdout.write(text)
        self.stdout.flush()

    def note(self, text: str) -> None:
        print(f"note: {text}", file=self.stderr)


def main(
    argv: Sequence[str] | None = None,
    *,
    connect: Connect | None = None,
    terminal: Terminal | None = None,
) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.verb:
        parser.print_help()
        return 2
    if terminal is None:
        terminal = Terminal(color=use_color(sys.stdout, os.environ))
    if connect is None:
        from lockstep.plugin import client

        connect = client.connect
    try:
        cluster = connect(args.kubeconfig, args.context)
        code: int = args.handler(args, cluster, terminal)
    except errors.PluginError as error:
        print(f"error: {error}", file=terminal.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `... | head`: the reader has all it wants
        if terminal.stdout is sys.stdout:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubectl lockstep",
        description="See and steer Lockstep DatabaseMigrations.",
    )
    parser.add_argument("--version", action="version", version=f"kubectl-lockstep {__version__}")
    _connection_options(parser, suppress=False)
    shared = argparse.ArgumentParser(add_help=False)
    _connection_options(shared, suppress=True)  # the same flags after the verb, kubectl-style
    verbs = parser.add_subparsers(dest="verb", metavar="COMMAND")

    status = verbs.add_parser("status", parents=[shared], help="table of DatabaseMigrations")
    status.add_argument(
        "-A", "--all-namespaces", action="store_true", help="list them in every namespace"
    )
    _output_option(status)
    status.set_defaults(handler=status_command)

    describe = verbs.add_parser(
        "describe", parents=[shared], help="spec, conditions, plan, history and log tail"
    )
    describe.add_argument("name")
    _output_option(describe)
    describe.set_defaults(handler=describe_command)

    approve = verbs.add_parser(
        "approve", parents=[shared], help="approve the plan a migration is waiting on"
    )
    approve.add_argument("name")
    approve.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    approve.set_defaults(handler=approve_command)

    retry = verbs.add_parser(
        "retry", parents=[shared], help="ask Lockstep to try a failed migration again"
    )
    retry.add_argument("name")
    retry.set_defaults(handler=retry_command)

    rollback = verbs.add_parser(
        "rollback", parents=[shared], help="lower spec.target (needs spec.downgrade: Allow)"
    )
    rollback.add_argument("name")
    rollback.add_argument("--to", required=True, metavar="REV", help="the revision to go down to")
    rollback.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    rollback.set_defaults(handler=rollback_command)

    logs = verbs.add_parser(
        "logs", parents=[shared], help="log of the migrate container of the newest Job"
    )
    logs.add_argument("name")
    logs.add_argument("--job", help="this Job instead of the newest one")
    logs.add_argument("-f", "--follow", action="store_true", help="stream until the Job ends")
    logs.set_defaults(handler=logs_command)
    return parser


def _connection_options(parser: argparse.ArgumentParser, suppress: bool) -> None:
    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    parser.add_argument(
        "--kubeconfig", default=default(None), help="kubeconfig file (default: $KUBECONFIG)"
    )
    parser.add_argument(
        "--context", default=default(None), help="kubeconfig context (default: current)"
    )
    parser.add_argument(
        "-n", "--namespace", default=default(None), help="default: the context's namespace"
    )


def _output_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-o", "--output", choices=["table", "json", "yaml"], default="table", help="%(choices)s"
    )


def _namespace(args: argparse.Namespace, cluster: Cluster) -> str:
    return str(args.namespace or cluster.default_namespace)


def confirm(terminal: Terminal, assume_yes: bool, question: str, what: str) -> bool:
    """True when --yes was given or the person answers y; refuses when nobody can answer."""
    if assume_yes:
        return True
    if not terminal.stdin.isatty():
        raise errors.RefusedError(
            f"stdin is not a terminal, so nobody can answer the prompt: pass --yes to {what}"
        )
    terminal.out(question)
    return terminal.stdin.readline().strip().lower() in {"y", "yes"}


# --- verbs ----------------------------------------------------------------------------------


def status_command(args: argparse.Namespace, cluster: Cluster, terminal: Terminal) -> int:
    namespace = None if args.all_namespaces else _namespace(args, cluster)
    items = cluster.list_migrations(namespace)
    if args.output != "table":
        terminal.out(render.dump(render.as_list(items), args.output))
    elif not items:
        print(render.no_migrations(namespace), end="", file=terminal.stderr)
    else:
        terminal.out(render.status_table(items, args.all_namespaces, terminal.now, terminal.color))
    return 0


def describe_command(args: argparse.Namespace, cluster: Cluster, terminal: Terminal) -> int:
    migration = cluster.get_migration(_namespace(args, cluster), args.name)
    if args.output != "table":
        terminal.out(render.dump(state.clean(migration), args.output))
    else:
        terminal.out(describe.describe(migration, terminal.now, terminal.color))
    return 0


def approve_command(args: argparse.Namespace, cluster: Cluster, terminal: Terminal) -> int:
    namespace = _namespace(args, cluster)
    migration = cluster.get_migration(namespace, args.name)
    problem = state.approval_problem(migration)
    if problem:
        raise errors.RefusedError(problem)
    plan = state.plan_of(migration) or {}
    plan_hash = str(plan["hash"])
    if state.annotations_of(migration).get(constants.ANNOTATION_APPROVE) == plan_hash:
        terminal.out(f"plan {plan_hash} of databasemigration/{args.name} is already approved\n")
        return 0
    terminal.out(f"Plan of databasemigration/{args.name} in namespace {namespace}:\n")
    terminal.out("\n".join(render.plan_lines(plan, terminal.color)) + "\n")
    question = render.approval_question(args.name, plan)
    if not confirm(terminal, args.yes, question, f"approve plan {plan_hash} for {args.name}"):
        raise errors.RefusedError("not approved: nothing changed")
    current = state.plan_of(cluster.get_migration(namespace, args.name)) or {}
    if current.get("hash") != plan_hash:
        raise errors.RefusedError(
            f"the plan of {args.name!r} changed while you decided (now "
            f"{current.get('hash') or 'none'}): run approve again to review the new plan"
        )
    patch = {"metadata": {"annotations": {constants.ANNOTATION_APPROVE: plan_hash}}}
    cluster.patch_migration(namespace, args.name, patch)
    terminal.out(
        f"databasemigration/{args.name} approved ({constants.ANNOTATION_APPROVE}={plan_hash})\n"
    )
    return 0


def retry_command(args: argparse.Namespace, cluster: Cluster, terminal: Terminal) -> int:
    namespace = _namespace(args, cluster)
    migration = cluster.get_migration(namespace, args.name)
    token = terminal.now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    patch = {"metadata": {"annotations": {constants.ANNOTATION_RETRY: token}}}
    cluster.patch_migration(namespace, args.name, patch)
    terminal.out(
        f"databasemigration/{args.name} retry requested ({constants.ANNOTATION_RETRY}={token})\n"
    )
    if not state.status_of(migration).get("failures"):
        terminal.note(
            f"{args.name!r} has no failed runs (status.failures is 0): Lockstep records the "
            "request, but there is nothing to retry"
        )
    return 0


def rollback_command(args: argparse.Namespace, cluster: Cluster, terminal: Terminal) -> int:
    namespace = _namespace(args, cluster)
    migration = cluster.get_migration(namespace, args.name)
    problem = state.downgrade_problem(migration)
    if problem:
        raise errors.RefusedError(problem)
    current = str(state.spec_of(migration).get("target") or "head")
    if current == args.to:
        terminal.out(f"databasemigration/{args.name} already has spec.target {args.to}\n")
        return 0
    applied = state.status_of(migration).get("appliedRevision") or "none"
    question = f"Roll back {args.name}: spec.target {current} → {args.to} (applied {applied})? "
    if not confirm(terminal, args.yes, question + "[y/N] ", f"roll {args.name} back"):
        raise errors.RefusedError("not rolled back: nothing changed")
    cluster.patch_migration(namespace, args.name, {"spec": {"target": args.to}})
    terminal.out(
        f"databasemigration/{args.name} spec.target {current} → {args.to}: Lockstep migrates "
        f"down now (follow it with: kubectl lockstep describe {args.name})\n"
    )
    owner = state.gitops_owner(migration)
    if owner:
        terminal.note(
            f"{owner} manages this resource and will set spec.target back to what git says on "
            "its next sync: change spec.target in git too"
        )
    else:
        terminal.note(
            "if a GitOps tool (Argo CD, Flux) manages this resource, it will revert this hand "
            "edit on its next sync: change spec.target in git too"
        )
    return 0


def logs_command(args: argparse.Namespace, cluster: Cluster, terminal: Terminal) -> int:
    namespace = _namespace(args, cluster)
    migration = cluster.get_migration(namespace, args.name)
    if args.job:
        job: Mapping[str, Any] | None = cluster.get_job(namespace, args.job)
    else:
        job = state.newest_job(cluster.jobs_of(namespace, args.name))
    if job is None:
        return _recorded_log(migration, None, terminal)
    job_name = str(job["metadata"]["name"])
    pod = state.newest_pod(cluster.pods_of_job(namespace, job_name))
    if pod is None:
        return _recorded_log(migration, job_name, terminal)
    labels = job["metadata"].get("labels") or {}
    container = (
        constants.PLAN_CONTAINER
        if labels.get(constants.LABEL_PHASE) == constants.PHASE_PLAN
        else constants.MIGRATE_CONTAINER
    )
    for chunk in cluster.pod_log(namespace, pod["metadata"]["name"], container, args.follow):
        terminal.out(chunk)
    return 0


def _recorded_log(migration: Mapping[str, Any], job: str | None, terminal: Terminal) -> int:
    """No pod to read from: fall back to the log tail Lockstep kept in the status."""
    name = state.name_of(migration)
    runs = [state.status_of(migration).get("lastRun") or {}]
    runs += state.status_of(migration).get("history") or []
    run = next((r for r in runs if r.get("logTail") and (job is None or r.get("job") == job)), None)
    gone = f"Job {job!r} has no pods left" if job else f"databasemigration {name!r} has no Jobs"
    if run is None:
        raise errors.RefusedError(f"{gone}, and Lockstep recorded no log for it")
    terminal.note(f"{gone}; showing the log tail kept in the status (Job {run.get('job')!r})")
    terminal.out(str(run["logTail"]).rstrip("\n") + "\n")
    return 0
