"""An Alembic run loads only what it uses (issue 21): not the SQL files' modules and splitter,
the tool adapters or the CRD's model, which cost it about a third of Lockstep's own imports.
Here the run is pointed at a port where nothing listens: it gets as far as connecting, having
imported everything its path imports before the first query."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import lockstep

# The subprocesses import this tree's Lockstep, whichever one the venv has installed.
SOURCE_ROOT = str(Path(lockstep.__file__).parents[1])
NOT_FOR_ALEMBIC = (
    "lockstep.sqlfiles",
    "lockstep.sql_splitter",
    "lockstep.pod.sql_planning",
    "lockstep.tools",
    "lockstep.model",
    "lockstep.cli.pod_commands",
)
RUN = (
    "import sys\n"
    "from lockstep.cli.main import main\n"
    "code = main(['run', '--tool', 'alembic', '--source', sys.argv[1], '--result-file',"
    " sys.argv[2], '--lock-wait-seconds', '1'])\n"
    "print(sorted(m for m in sys.modules if m.startswith('lockstep')))\n"
    "sys.exit(code)\n"
)
ENV_PY = "from alembic import context\n"
REVISION = 'revision = "r1"\ndown_revision = None\n\n\ndef upgrade():\n    pass\n'


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_an_alembic_run_loads_no_sql_files_module_tool_adapter_or_model(tmp_path: Path) -> None:
    source = tmp_path / "migrations"
    (source / "versions").mkdir(parents=True)
    (source / "env.py").write_text(ENV_PY)
    (source / "versions" / "r1_one.py").write_text(REVISION)
    result_file = tmp_path / "result.json"
    url = f"postgresql://app:secret-pw@127.0.0.1:{_closed_port()}/shop"
    done = subprocess.run(
        [sys.executable, "-c", RUN, str(source), str(result_file)],
        capture_output=True,
        text=True,
        check=False,
        env={"DATABASE_URL": url, "PATH": "/usr/bin:/bin", "PYTHONPATH": SOURCE_ROOT},
    )
    result = json.loads(result_file.read_text())
    assert result["reason"] == "DatabaseUnavailable", (result, done.stderr)
    loaded = done.stdout.strip().splitlines()[-1]
    assert "lockstep.pod.alembic_migration" in loaded, done.stderr
    assert [name for name in NOT_FOR_ALEMBIC if f"'{name}'" in loaded] == []


def test_claiming_a_table_does_not_load_the_crd_model() -> None:
    code = "import sys, lockstep.pod.history_owners\nprint('lockstep.model' in sys.modules)\n"
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": SOURCE_ROOT},
    )
    assert done.stdout.strip() == "False"
