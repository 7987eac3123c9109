"""The arguments of the commands that migrate and plan: `run`, `plan`, `classify`, `shadow-reset`.

The operator builds these objects for its Jobs and renders them with ``to_argv``; the pod's CLI
parses its command line with the same ``define`` and gets the same object back.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Final

from lockstep.contract import argv as cli
from lockstep.contract import report

TOOLS: Final = ("sql", "alembic")
ENGINES: Final = ("postgresql", "mysql", "mariadb", "sqlite")
DIRECTIONS: Final = ("up", "down")
PLAN_SALT_HELP: Final = "the operator passes the spec hash"
# What `lockstep run` uses when the command line does not say.
LOCK_WAIT_SECONDS: Final = 600.0
STATEMENT_LOCK_TIMEOUT: Final = "5s"
_RESULT_HELP: Final = "where to write the JSON result (the container's termination message)"
_PLAN_RESULT_HELP: Final = (
    "where to write the compact plan JSON (the container's termination message)"
)


def _source(command: argparse.ArgumentParser) -> None:
    """What `run` and `plan` share: the tool, its source, the target and the version table."""
    command.add_argument("--tool", choices=list(TOOLS), required=True)
    command.add_argument("--source", type=Path, required=True, help="directory with the migrations")
    command.add_argument("--target", default="head", help="revision to reach (default: head)")
    history = command.add_argument_group("the version table (docs/existing-databases.md)")
    history.add_argument(
        "--version-table", metavar="NAME", help="the tool's table (default: the tool's own)"
    )
    history.add_argument(
        "--version-table-schema", metavar="SCHEMA", help="its schema (default: the current one)"
    )
    history.add_argument(
        "--owner",
        metavar="NAMESPACE/NAME",
        help="the DatabaseMigration: claims the version table, refusing another owner",
    )
    history.add_argument(
        "--baseline",
        metavar="VERSION",
        help="tool sql: record the files up to VERSION as applied, not run, on a database "
        "without this history",
    )


def _version_table_argv(argv: list[str], args: RunArgs | PlanArgs) -> None:
    cli.option(argv, "--version-table", args.version_table)
    cli.option(argv, "--version-table-schema", args.version_table_schema)
    cli.option(argv, "--owner", args.owner)
    cli.option(argv, "--baseline", args.baseline)


def _result_file(command: argparse.ArgumentParser, help_text: str = _RESULT_HELP) -> None:
    command.add_argument("--result-file", default=cli.DEFAULT_RESULT_FILE, help=help_text)


@dataclass(frozen=True)
class RunArgs:
    """`lockstep run`: bring $DATABASE_URL to the target with the built-in runner."""

    COMMAND: ClassVar[str] = "run"
    HELP: ClassVar[str] = (
        "apply built-in migrations (SQL files or Alembic scripts) to $DATABASE_URL"
    )
    DESCRIPTION: ClassVar[str | None] = (
        "Runs inside migration Jobs. The database URL comes from $DATABASE_URL only, "
        "so the password never appears in a command line."
    )

    tool: str
    source: Path
    target: str = "head"
    lock_wait_seconds: float | None = None  # None: LOCK_WAIT_SECONDS
    statement_lock_timeout: str | None = None  # None: STATEMENT_LOCK_TIMEOUT
    no_lock: bool = False
    allow_downgrade: bool = False
    plan_salt: str | None = None
    expect_plan: str | None = None
    shadow_url_env: str | None = None
    result_file: str = cli.DEFAULT_RESULT_FILE
    version_table: str | None = None
    version_table_schema: str | None = None
    owner: str | None = None
    baseline: str | None = None

    @staticmethod
    def define(command: argparse.ArgumentParser) -> None:
        _source(command)
        command.add_argument(
            "--allow-downgrade", action="store_true", help="allow going down to --target"
        )
        command.add_argument("--lock-wait-seconds", type=float)  # None: LOCK_WAIT_SECONDS
        command.add_argument(
            "--no-lock",
            action="store_true",
            help="do not take the migration lock (a `lockstep lock` sidecar in this pod holds it)",
        )
        command.add_argument("--statement-lock-timeout")  # None: STATEMENT_LOCK_TIMEOUT
        _result_file(command)
        approval = command.add_argument_group("approved plans and shadow rehearsal")
        approval.add_argument(
            "--plan-salt",
            metavar="SALT",
            help=f"render and classify the plan before applying, hashed with SALT "
            f"({PLAN_SALT_HELP})",
        )
        approval.add_argument(
            "--expect-plan",
            metavar="HASH",
            help=f"refuse (exit {report.EXIT_PLAN_CHANGED}, PlanChanged) unless the plan's hash "
            "is HASH; needs --plan-salt",
        )
        approval.add_argument(
            "--shadow-url-env",
            metavar="NAME",
            help="first rehearse on the disposable database whose URL is in $NAME (it is "
            f"emptied; exit {report.EXIT_REHEARSAL_FAILED}, RehearsalFailed, when the "
            "rehearsal fails)",
        )

    def to_argv(self) -> tuple[str, ...]:
        argv = cli.command(self.COMMAND)
        cli.option(argv, "--tool", self.tool)
        cli.option(argv, "--source", self.source)
        cli.option(argv, "--target", self.target)
        cli.option(argv, "--lock-wait-seconds", self.lock_wait_seconds)
        cli.option(argv, "--statement-lock-timeout", self.statement_lock_timeout)
        cli.switch(argv, "--no-lock", self.no_lock)
        cli.switch(argv, "--allow-downgrade", self.allow_downgrade)
        cli.option(argv, "--plan-salt", self.plan_salt)
        cli.option(argv, "--expect-plan", self.expect_plan)
        cli.option(argv, "--shadow-url-env", self.shadow_url_env)
        _version_table_argv(argv, self)
        cli.option(
            argv, "--result-file", cli.unless_default(self.result_file, cli.DEFAULT_RESULT_FILE)
        )
        return tuple(argv)


@dataclass(frozen=True)
class PlanArgs:
    """`lockstep plan`: what `run` would execute, classified and hashed (read-only)."""

    COMMAND: ClassVar[str] = "plan"
    HELP: ClassVar[str] = (
        "show what `lockstep run` would execute on $DATABASE_URL, classified (read-only)"
    )
    DESCRIPTION: ClassVar[str | None] = (
        "Prints the plan as JSON: the SQL files that would run, whether they are "
        "additive or destructive, and the hash `lockstep run --expect-plan` checks. Reads the "
        "database's current revision only; takes no lock."
    )

    tool: str
    source: Path
    salt: str
    target: str = "head"
    allow_downgrade: bool = False
    result_file: str = cli.DEFAULT_RESULT_FILE
    version_table: str | None = None
    version_table_schema: str | None = None
    owner: str | None = None
    baseline: str | None = None

    @staticmethod
    def define(command: argparse.ArgumentParser) -> None:
        _source(command)
        command.add_argument(
            "--salt", required=True, help=f"mixed into the plan's hash ({PLAN_SALT_HELP})"
        )
        command.add_argument(
            "--allow-downgrade", action="store_true", help="allow going down to --target"
        )
        _result_file(command, _PLAN_RESULT_HELP)

    def to_argv(self) -> tuple[str, ...]:
        argv = cli.command(self.COMMAND)
        cli.option(argv, "--tool", self.tool)
        cli.option(argv, "--source", self.source)
        cli.option(argv, "--target", self.target)
        cli.option(argv, "--salt", self.salt)
        cli.switch(argv, "--allow-downgrade", self.allow_downgrade)
        _version_table_argv(argv, self)
        cli.option(
            argv, "--result-file", cli.unless_default(self.result_file, cli.DEFAULT_RESULT_FILE)
        )
        return tuple(argv)


@dataclass(frozen=True)
class ClassifyArgs:
    """`lockstep classify`: the plan of SQL a tool in an image printed offline."""

    COMMAND: ClassVar[str] = "classify"
    HELP: ClassVar[str] = (
        "classify SQL a migration tool printed (e.g. alembic ... --sql) into a plan"
    )
    DESCRIPTION: ClassVar[str | None] = (
        "Reads the SQL file, classifies every statement and prints the plan as JSON; "
        "the plan Job of a tool in an image runs it on the SQL the tool printed."
    )

    file: Path
    engine: str
    salt: str
    target: str
    direction: str = "up"
    direction_file: Path | None = None
    current: str | None = None
    result_file: str = cli.DEFAULT_RESULT_FILE

    @staticmethod
    def define(command: argparse.ArgumentParser) -> None:
        command.add_argument("file", type=Path, help="the SQL the tool printed")
        command.add_argument("--engine", required=True, choices=list(ENGINES))
        command.add_argument(
            "--salt", required=True, help=f"mixed into the plan's hash ({PLAN_SALT_HELP})"
        )
        command.add_argument("--direction", choices=list(DIRECTIONS), default="up")
        command.add_argument(
            "--direction-file",
            type=Path,
            help="a file holding the direction (overrides --direction)",
        )
        command.add_argument("--from", dest="current", help="the revision the database is at")
        command.add_argument("--to", dest="target", required=True, help="the revision to reach")
        _result_file(command, _PLAN_RESULT_HELP)

    def to_argv(self) -> tuple[str, ...]:
        argv = cli.command(self.COMMAND, str(self.file))
        cli.option(argv, "--engine", self.engine)
        cli.option(argv, "--salt", self.salt)
        cli.option(argv, "--direction", cli.unless_default(self.direction, "up"))
        cli.option(argv, "--direction-file", self.direction_file)
        cli.option(argv, "--from", self.current)
        cli.option(argv, "--to", self.target)
        cli.option(
            argv, "--result-file", cli.unless_default(self.result_file, cli.DEFAULT_RESULT_FILE)
        )
        return tuple(argv)


@dataclass(frozen=True)
class ShadowResetArgs:
    """`lockstep shadow-reset`: empty the shadow database, first step of a rehearsal."""

    COMMAND: ClassVar[str] = "shadow-reset"
    HELP: ClassVar[str] = (
        "empty the shadow database in $SHADOW_DATABASE_URL (first step of a rehearsal)"
    )
    DESCRIPTION: ClassVar[str | None] = (
        "Drops everything in the shadow database. Refuses when it is the database in "
        "$DATABASE_URL. Migration Jobs of tools in an image run it before rehearsing."
    )

    result_file: str = cli.DEFAULT_RESULT_FILE

    @staticmethod
    def define(command: argparse.ArgumentParser) -> None:
        _result_file(command)

    def to_argv(self) -> tuple[str, ...]:
        argv = cli.command(self.COMMAND)
        cli.option(
            argv, "--result-file", cli.unless_default(self.result_file, cli.DEFAULT_RESULT_FILE)
        )
        return tuple(argv)
