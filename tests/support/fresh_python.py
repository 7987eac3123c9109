"""Run Python code in a fresh interpreter on this tree's operator code: what a command imports
can only be seen in a process that imported nothing before it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import lockstep

SOURCE_ROOT = str(Path(lockstep.__file__).parents[1])  # this tree's, whichever is installed


def run(code: str, env: dict[str, str] | None = None) -> str:
    """The code's standard output (a failure raises, with its standard error)."""
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**(env or {}), "PATH": "/usr/bin:/bin", "PYTHONPATH": SOURCE_ROOT},
    )
    return done.stdout
