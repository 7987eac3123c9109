"""Every pod command the operator can put in a Job, and the parser that reads them back.

The pod's CLI (:mod:`lockstep.cli.main`) registers these same definitions, so a command line
the operator writes is one the pod accepts, with the same typed arguments.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Final

from lockstep.contract import argv as cli
from lockstep.contract import helper_args, migration_args

PodCommandArgs = (
    migration_args.RunArgs
    | migration_args.PlanArgs
    | migration_args.ClassifyArgs
    | migration_args.ShadowResetArgs
    | helper_args.LockArgs
    | helper_args.ClaimArgs
    | helper_args.DburlArgs
    | helper_args.WaitArgs
)
ARGS_TYPES: Final[tuple[type[cli.PodArgs], ...]] = (
    migration_args.RunArgs,
    migration_args.PlanArgs,
    migration_args.ClassifyArgs,
    migration_args.ShadowResetArgs,
    helper_args.LockArgs,
    helper_args.ClaimArgs,
    helper_args.DburlArgs,
    helper_args.WaitArgs,
)


class UnknownCommandError(ValueError):
    """The command line is not one of the pod commands."""


def build_parser() -> argparse.ArgumentParser:
    """A parser of the pod commands alone (``exit_on_error`` off: errors raise)."""
    parser = argparse.ArgumentParser(prog=cli.PROGRAM, exit_on_error=False)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for args_type in ARGS_TYPES:
        cli.add_command(commands, args_type)
    return parser


def parse(argv: Sequence[str]) -> PodCommandArgs:
    """The typed arguments of a pod command line (with or without the leading ``lockstep``)."""
    return from_namespace(build_parser().parse_args(cli.words(argv)))


def from_namespace(namespace: argparse.Namespace) -> PodCommandArgs:
    """The typed arguments in a namespace parsed by any parser that added the pod commands."""
    args_type = getattr(namespace, "args_type", None)
    if args_type not in ARGS_TYPES:
        raise UnknownCommandError(f"not a pod command: {getattr(namespace, 'command', None)!r}")
    args: PodCommandArgs = cli.from_namespace(args_type, namespace)
    return args
