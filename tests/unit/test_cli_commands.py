"""`lockstep COMMAND ...` builds the parser of that command alone (issue 21): a Job's `run` and
the lock's startup probe, every second, need not build (and import) the other nine.
The parser they get must parse, and word its help and errors, as the full parser does."""

from __future__ import annotations

import argparse
import contextlib
import io
import subprocess
import sys
from pathlib import Path

import pytest

import lockstep
from lockstep.cli import main as cli_main

SOURCE_ROOT = str(Path(lockstep.__file__).parents[1])  # this tree's, whichever is installed


def _choices(parser: argparse.ArgumentParser) -> list[str]:
    (commands,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return list(commands.choices)


def test_the_command_table_is_the_full_parser() -> None:
    assert _choices(cli_main.build_parser()) == [name for name, *_ in cli_main.COMMANDS]


@pytest.mark.parametrize("name", [name for name, *_ in cli_main.COMMANDS])
def test_one_command_parses_and_words_its_help_as_the_full_parser(name: str) -> None:
    alone = cli_main.build_parser(only=name)
    assert _choices(alone) == [name]
    outputs = []
    for parser in (alone, cli_main.build_parser()):
        text = io.StringIO()
        with contextlib.redirect_stdout(text), pytest.raises(SystemExit):
            parser.parse_args([name, "--help"])
        outputs.append(text.getvalue())
    assert outputs[0] == outputs[1]


def test_a_run_parses_alike() -> None:
    words = ["run", "--tool", "alembic", "--source", "/src", "--no-lock", "--target", "r7"]
    alone = vars(cli_main.build_parser(only="run").parse_args(words))
    full = vars(cli_main.build_parser().parse_args(words))
    assert alone.keys() == full.keys()
    assert {k: v for k, v in alone.items() if k != "handler"} == {
        k: v for k, v in full.items() if k != "handler"
    }


def test_a_run_imports_no_other_command() -> None:
    code = (
        "import sys\n"
        "from lockstep.cli import main\n"
        "try:\n"
        "    main.main(['run', '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith('lockstep.')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": SOURCE_ROOT},
    )
    loaded = done.stdout.strip().splitlines()[-1]
    assert "lockstep.cli.run_command" in loaded
    for other in (
        "lockstep.cli.pod_commands",
        "lockstep.contract.helper_args",
        "lockstep.cli.local",
    ):
        assert other not in loaded


def test_an_unknown_command_is_refused_naming_every_command() -> None:
    text = io.StringIO()
    with contextlib.redirect_stderr(text), pytest.raises(SystemExit):
        cli_main.main(["rum"])
    assert "invalid choice: 'rum'" in text.getvalue()
    assert "'shadow-reset'" in text.getvalue()
