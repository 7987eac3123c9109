"""The arguments of the helper commands around a migration: `lock`, `claim`, `dburl`, `wait`.

`lock` is the Job's lock sidecar (and its startup probe), `claim` the init container that claims
an external tool's version table for its DatabaseMigration, `dburl` the init container that
converts $DATABASE_URL for tools that cannot take a URL, `wait` the app's init container that
waits for a migration where there is no admission webhook.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Final

from lockstep.contract import argv as cli

# What `lockstep lock` uses when the command line does not say.
LOCK_WAIT_SECONDS: Final = 600.0
LOCK_READY_FILE: Final = Path("/run/lockstep/locked")
WAIT_INTERVAL_SECONDS: Final = 2.0


@dataclass(frozen=True)
class LockArgs:
    """`lockstep lock`: hold the migration lock until stopped, or (``probe``) check it is held."""

    COMMAND: ClassVar[str] = "lock"
    HELP: ClassVar[str] = (
        "hold the migration lock of $DATABASE_URL until stopped (the Job's lock sidecar)"
    )
    DESCRIPTION: ClassVar[str | None] = None

    wait_seconds: float | None = None  # None: LOCK_WAIT_SECONDS
    probe: bool = False
    ready_file: Path = LOCK_READY_FILE

    @staticmethod
    def define(command: argparse.ArgumentParser) -> None:
        command.add_argument("--wait-seconds", type=float, help="give up after this")
        command.add_argument(
            "--ready-file",
            type=Path,
            default=LOCK_READY_FILE,
            help="written once the lock is held (the startup probe checks it)",
        )
        command.add_argument("--probe", action="store_true", help="exit 0 if the lock is held")

    def to_argv(self) -> tuple[str, ...]:
        argv = cli.command(self.COMMAND)
        cli.option(argv, "--wait-seconds", self.wait_seconds)
        cli.switch(argv, "--probe", self.probe)
        cli.option(argv, "--ready-file", self.ready_file)
        return tuple(argv)


@dataclass(frozen=True)
class ClaimArgs:
    """`lockstep claim`: record that a DatabaseMigration's tool records in a version table."""

    COMMAND: ClassVar[str] = "claim"
    HELP: ClassVar[str] = (
        "claim a version table of $DATABASE_URL for one DatabaseMigration (refuse another's)"
    )
    DESCRIPTION: ClassVar[str | None] = (
        "Runs in migration Jobs of tools in an image, once the lock sidecar holds the lock: "
        "a second DatabaseMigration on the same version table fails here (VersionTableInUse), "
        "before the tool starts."
    )

    tool: str
    version_table: str
    owner: str
    version_table_schema: str | None = None
    result_file: str = cli.DEFAULT_RESULT_FILE

    @staticmethod
    def define(command: argparse.ArgumentParser) -> None:
        command.add_argument("--tool", required=True)
        command.add_argument("--version-table", required=True, metavar="NAME")
        command.add_argument("--owner", required=True, metavar="NAMESPACE/NAME")
        command.add_argument(
            "--version-table-schema", metavar="SCHEMA", help="default: the current schema"
        )
        command.add_argument("--result-file", default=cli.DEFAULT_RESULT_FILE)

    def to_argv(self) -> tuple[str, ...]:
        argv = cli.command(self.COMMAND)
        cli.option(argv, "--tool", self.tool)
        cli.option(argv, "--version-table", self.version_table)
        cli.option(argv, "--owner", self.owner)
        cli.option(argv, "--version-table-schema", self.version_table_schema)
        cli.option(
            argv, "--result-file", cli.unless_default(self.result_file, cli.DEFAULT_RESULT_FILE)
        )
        return tuple(argv)


@dataclass(frozen=True)
class DburlArgs:
    """`lockstep dburl`: write $DATABASE_URL as a tool's own variables, in an env file."""

    COMMAND: ClassVar[str] = "dburl"
    HELP: ClassVar[str] = (
        "write $DATABASE_URL as a tool's own variables (e.g. FLYWAY_URL/USER/PASSWORD)"
    )
    DESCRIPTION: ClassVar[str | None] = (
        "Runs as the Job's init container for tools that cannot take a URL. The "
        "file holds the password: write it to a memory-backed volume only."
    )

    format: str
    out: Path

    @staticmethod
    def define(command: argparse.ArgumentParser) -> None:
        command.add_argument("--format", required=True, help="flyway, jdbc or url")
        command.add_argument("--out", type=Path, required=True, help="env file to write (sourced)")

    def to_argv(self) -> tuple[str, ...]:
        argv = cli.command(self.COMMAND)
        cli.option(argv, "--format", self.format)
        cli.option(argv, "--out", self.out)
        return tuple(argv)


@dataclass(frozen=True)
class WaitArgs:
    """`lockstep wait`: block until a DatabaseMigration is migrated for an image."""

    COMMAND: ClassVar[str] = "wait"
    HELP: ClassVar[str] = (
        "block until a DatabaseMigration is migrated for an image (init container)"
    )
    DESCRIPTION: ClassVar[str | None] = (
        "The rollout gate for clusters without admission webhooks: run as the "
        "app's first init container. Needs RBAC: get on databasemigrations.lockstep.dev in "
        "the pod's namespace."
    )

    migration: str
    image: str | None = None
    namespace: str | None = None
    timeout: float = 0
    interval: float = WAIT_INTERVAL_SECONDS
    kubeconfig: str | None = None

    @staticmethod
    def define(command: argparse.ArgumentParser) -> None:
        command.add_argument(
            "--for", dest="migration", required=True, help="DatabaseMigration name"
        )
        command.add_argument("--image", help="the app image (default: $LOCKSTEP_IMAGE)")
        command.add_argument("-n", "--namespace", help="default: the pod's own namespace")
        command.add_argument("--timeout", type=float, default=0, help="seconds; 0 waits forever")
        command.add_argument(
            "--interval",
            type=float,
            default=WAIT_INTERVAL_SECONDS,
            help="seconds between checks",
        )
        command.add_argument("--kubeconfig")

    def to_argv(self) -> tuple[str, ...]:
        argv = cli.command(self.COMMAND)
        cli.option(argv, "--for", self.migration)
        cli.option(argv, "--image", self.image)
        cli.option(argv, "--namespace", self.namespace)
        cli.option(argv, "--timeout", cli.unless_default(self.timeout, 0))
        cli.option(argv, "--interval", cli.unless_default(self.interval, WAIT_INTERVAL_SECONDS))
        cli.option(argv, "--kubeconfig", self.kubeconfig)
        return tuple(argv)
