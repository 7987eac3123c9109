"""The lock sidecar's startup probe: runs every second while a pod waits, so it must stay cheap."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROBE = (
    "import sys\n"
    "from lockstep.cli.main import main\n"
    "code = main(['lock', '--probe', '--ready-file', sys.argv[1]])\n"
    "print('sqlalchemy' in sys.modules)\n"
    "sys.exit(code)\n"
)


def _probe(ready_file: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", PROBE, str(ready_file)], capture_output=True, text=True, check=False
    )


def test_the_probe_fails_until_the_holder_writes_its_file(tmp_path: Path) -> None:
    ready = tmp_path / "lock-held"
    assert _probe(ready).returncode == 1
    ready.write_text("")
    assert _probe(ready).returncode == 0


def test_the_probe_imports_no_sqlalchemy(tmp_path: Path) -> None:
    result = _probe(tmp_path / "lock-held")
    assert result.stdout.strip() == "False", result.stderr
