"""`lockstep COMMAND` builds the parser of that command alone (issue 21), and parses as before.

A Job's `lockstep run` used to build the parsers of all ten commands, importing the modules of
each; now it builds its own. What a person sees stays the same: every command's help, and
`lockstep --help`, an unknown command or no command at all get the parser of every command.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

import lockstep
from lockstep.cli import main as cli_main
from lockstep.cli import pod_commands

# This checkout's package, whatever the virtualenv has installed: a fresh interpreter must
# import the code under test.
TREE = str(Path(lockstep.__file__).resolve().parents[1])


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    [action] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def test_the_table_names_every_command_in_the_order_help_lists_them() -> None:
    assert list(_subcommands(cli_main.build_parser())) == list(cli_main.COMMANDS)
    assert set(pod_commands.ADD) <= set(cli_main.COMMANDS)


@pytest.mark.parametrize("command", list(cli_main.COMMANDS))
def test_a_command_alone_gets_the_parser_it_gets_among_all(command: str) -> None:
    alone = _subcommands(cli_main.build_parser(command))
    assert list(alone) == [command]
    among_all = _subcommands(cli_main.build_parser())[command]
    assert alone[command].format_help() == among_all.format_help()
    assert alone[command]._defaults == among_all._defaults


@pytest.mark.parametrize("word", [None, "--help", "--version", "no-such-command", "--"])
def test_anything_but_a_command_gets_every_command(word: str | None) -> None:
    assert list(_subcommands(cli_main.build_parser(word))) == list(cli_main.COMMANDS)


def _main(*words: str) -> subprocess.CompletedProcess[str]:
    code = (
        "import sys\n"
        "from lockstep.cli.main import main\n"
        "try:\n"
        "    code = main(sys.argv[1:])\n"
        "except SystemExit as stop:\n"
        "    code = stop.code\n"
        "print(sorted(m for m in sys.modules if m.startswith('lockstep.')), file=sys.stderr)\n"
        "sys.exit(code)\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code, *words],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": TREE},
    )


def test_run_loads_no_other_command_module(tmp_path: Path) -> None:
    done = _main("run", "--tool", "sql", "--source", str(tmp_path), "--result-file", "/dev/null")
    assert done.returncode == 2, done.stderr  # no DATABASE_URL: said so, nothing run
    assert "DATABASE_URL is not set" in done.stderr
    loaded = done.stderr.splitlines()[-1]
    assert "'lockstep.cli.run_command'" in loaded, loaded
    for module in (
        "lockstep.cli.pod_commands",
        "lockstep.contract.helper_args",
        "lockstep.cli.local",
    ):
        assert f"'{module}'" not in loaded, loaded


def test_errors_and_help_read_as_they_did() -> None:
    unknown = _main("no-such-command")
    assert unknown.returncode == 2
    assert "invalid choice: 'no-such-command' (choose from 'operator', 'run', 'plan'" in (
        unknown.stderr
    )
    extra = _main("lock", "--probe", "--ready-file", "/nonexistent", "extra")
    assert extra.returncode == 2
    assert "usage: lockstep [-h] [--version] COMMAND ..." in extra.stderr
    assert "lockstep: error: unrecognized arguments: extra" in extra.stderr
    everything = _main("--help")
    assert everything.returncode == 0
    assert all(command in everything.stdout for command in cli_main.COMMANDS)
