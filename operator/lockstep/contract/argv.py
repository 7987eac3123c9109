"""How a pod command's typed arguments become a command line, and come back from one.

Every command the operator puts in a Job is a frozen dataclass (see
:mod:`lockstep.contract.migration_args`, :mod:`lockstep.contract.helper_args`) with one argparse
definition, used both by the pod's CLI and by :func:`lockstep.contract.commands.parse`. A
dataclass field is named after its option's ``dest``; an option left at its default is not
written, so the command lines stay as short as they always were.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

PROGRAM = "lockstep"
# Where the pod commands write their report: the container's termination message.
DEFAULT_RESULT_FILE = "/dev/termination-log"

if TYPE_CHECKING:  # argparse does not subscript at run time
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]


class PodArgs(Protocol):
    """The typed arguments of one pod command."""

    COMMAND: ClassVar[str]
    HELP: ClassVar[str]
    DESCRIPTION: ClassVar[str | None]

    @staticmethod
    def define(parser: argparse.ArgumentParser) -> None: ...

    def to_argv(self) -> tuple[str, ...]: ...


Args = TypeVar("Args", bound=PodArgs)


def add_command(commands: Subparsers, args_type: type[PodArgs]) -> argparse.ArgumentParser:
    """Add ``args_type``'s command to ``commands``; its parsed namespace knows its type."""
    parser = commands.add_parser(
        args_type.COMMAND, help=args_type.HELP, description=args_type.DESCRIPTION
    )
    args_type.define(parser)
    parser.set_defaults(args_type=args_type)
    return parser


def from_namespace(args_type: type[Args], namespace: argparse.Namespace) -> Args:
    """The typed arguments in a namespace parsed by ``args_type.define``."""
    assert dataclasses.is_dataclass(args_type)
    values = {field.name: getattr(namespace, field.name) for field in dataclasses.fields(args_type)}
    return args_type(**values)


def command(name: str, *words: str) -> list[str]:
    return [PROGRAM, name, *words]


def option(argv: list[str], flag: str, value: str | float | Path | None) -> None:
    """Append ``flag value`` unless ``value`` is None."""
    if value is not None:
        argv += [flag, number(value) if isinstance(value, int | float) else str(value)]


def switch(argv: list[str], flag: str, on: bool) -> None:
    if on:
        argv.append(flag)


def unless_default(value: Any, default: Any) -> Any:
    """``value``, or None when it is ``default`` (so that it is not written)."""
    return None if value == default else value


def number(value: float) -> str:
    """A number as the operator writes it: ``600``, ``600.0`` both as "600"; ``1.5`` as is."""
    return str(int(value)) if float(value).is_integer() else str(value)


def words(argv: Sequence[str]) -> list[str]:
    """The words after the program name."""
    return list(argv[1:]) if argv and argv[0] == PROGRAM else list(argv)
