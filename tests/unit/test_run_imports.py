"""Each tool's run imports its own modules (issue 21): an Alembic run loads no SQL-file reader,
planner, splitter or executor, no other tool's adapter and, without ``--owner``, none of the
version tables' definitions; a SQL run loads no Alembic.

Both run for real, on SQLite, in a fresh interpreter on this checkout's code.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import lockstep

TREE = str(Path(lockstep.__file__).resolve().parents[1])
EXAMPLE_ENV = Path(__file__).resolve().parents[2] / "examples/alembic-postgresql/migrations/env.py"

RUN = (
    "import sys\n"
    "from lockstep.cli.main import main\n"
    "code = main(['run', '--tool', sys.argv[1], '--source', sys.argv[2], '--result-file',"
    " sys.argv[3]])\n"
    "print(sorted(m for m in sys.modules if m.split('.')[0] in ('lockstep', 'alembic')))\n"
    "sys.exit(code)\n"
)
# Modules of tool sql, or of nobody's run.
NOT_FOR_ALEMBIC = (
    "lockstep.sqlfiles",
    "lockstep.sql_splitter",
    "lockstep.sql_file_modes",
    "lockstep.pod.sql_planning",
    "lockstep.pod.sql_execution",
    "lockstep.pod.sql_history",
    "lockstep.pod.sql_bookkeeping",
    "lockstep.pod.history_owners",
    "lockstep.pod.pg_run",
    "lockstep.pod.plan_model",
    "lockstep.version_tables",
    "lockstep.model",
    "lockstep.classify",
    "lockstep.tools.sql",
    "lockstep.tools.flyway",
    "lockstep.tools.version_table",
    "lockstep.cli.pod_commands",
)


def _run(tool: str, source: Path, tmp_path: Path) -> list[str]:
    result_file = tmp_path / "result.json"
    done = subprocess.run(
        [sys.executable, "-c", RUN, tool, str(source), str(result_file)],
        capture_output=True,
        text=True,
        check=False,
        env={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": TREE,
            "DATABASE_URL": f"sqlite:///{tmp_path / 'app.db'}",
        },
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(result_file.read_text())["result"] == "Succeeded"
    loaded: list[str] = json.loads(done.stdout.strip().splitlines()[-1].replace("'", '"'))
    return loaded


def test_an_alembic_run_imports_the_alembic_pieces_only(tmp_path: Path) -> None:
    source = tmp_path / "migrations"
    (source / "versions").mkdir(parents=True)
    shutil.copyfile(EXAMPLE_ENV, source / "env.py")
    (source / "versions" / "r1_one.py").write_text(
        'revision = "r1"\ndown_revision = None\nbranch_labels = None\ndepends_on = None\n\n'
        "from alembic import op\n\n\n"
        "def upgrade() -> None:\n    op.execute('CREATE TABLE one (id integer)')\n"
    )
    loaded = _run("alembic", source, tmp_path)
    assert "lockstep.pod.alembic_migration" in loaded
    unexpected = [m for m in loaded if m.startswith(NOT_FOR_ALEMBIC)]
    assert unexpected == []


def test_a_sql_run_imports_no_alembic(tmp_path: Path) -> None:
    source = tmp_path / "sql"
    source.mkdir()
    (source / "V1__one.sql").write_text("CREATE TABLE one (id integer);\n")
    loaded = _run("sql", source, tmp_path)
    assert "lockstep.pod.sql_execution" in loaded
    unexpected = [m for m in loaded if m.startswith(("alembic", "lockstep.pod.alembic_migration"))]
    assert unexpected == []
