"""Stage 4: runner overhead. `lockstep run` against psql, and against `alembic upgrade head`.

A migration set of `files` versioned SQL files (each creates a table, an index and inserts a
row) is applied to a fresh PostgreSQL database, wall time measured around the whole command
(process start and imports included, as in a Job):

* `lockstep run --tool sql` (takes the migration lock itself: no sidecar here);
* `psql -1 -f FILE` once per file, in file order: one process and one transaction per file;
* one `psql` session that runs each file between BEGIN and COMMIT (the strict floor);
* `lockstep run` and the psql session on 1 file: the fixed cost of a run, so that
  (200 files - 1 file) / 199 is the cost per file.

The same statements as `files` Alembic revisions (`op.execute`), applied by
`lockstep run --tool alembic` and by `alembic upgrade head` directly.

Each command runs `repeats` times, each time on a database of its own; the median counts.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psycopg
from benchlib.common import REPO, log
from sqlalchemy.engine import make_url

VENV_BIN = Path(sys.executable).parent
EXAMPLE_ENV = REPO / "examples" / "alembic-postgresql" / "migrations" / "env.py"


def find_psql() -> str:
    found = shutil.which("psql")
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/psql"))
    if not candidates:
        raise RuntimeError("psql not found (apt-get install postgresql-client)")
    return str(candidates[-1])


def statements(i: int) -> str:
    return (
        f"CREATE TABLE step_{i:03d} (id integer PRIMARY KEY, name text NOT NULL, "
        f"created_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP);\n"
        f"CREATE INDEX step_{i:03d}_name ON step_{i:03d} (name);\n"
        f"INSERT INTO step_{i:03d} (id, name) VALUES (1, 'one');\n"
    )


def write_sql_set(directory: Path, files: int) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(1, files + 1):
        path = directory / f"V{i}__step_{i:03d}.sql"
        path.write_text(statements(i))
        paths.append(path)
    return paths


def write_alembic_set(directory: Path, revisions: int) -> Path:
    """An Alembic project (alembic.ini, migrations/env.py, migrations/versions/*.py)."""
    versions = directory / "migrations" / "versions"
    versions.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(EXAMPLE_ENV, directory / "migrations" / "env.py")
    (directory / "alembic.ini").write_text(
        "[alembic]\nscript_location = %(here)s/migrations\n"
        "[loggers]\nkeys = root\n[handlers]\nkeys = console\n[formatters]\nkeys = generic\n"
        "[logger_root]\nlevel = WARNING\nhandlers = console\n"
        "[handler_console]\nclass = StreamHandler\nargs = (sys.stderr,)\nformatter = generic\n"
        "[formatter_generic]\nformat = %(levelname)s %(message)s\n"
    )
    previous = "None"
    for i in range(1, revisions + 1):
        revision = f"r{i:04d}"
        body = "\n".join(f"    op.execute({line!r})" for line in statements(i).strip().splitlines())
        (versions / f"{revision}_step.py").write_text(
            f'"""step {i}"""\nfrom alembic import op\n\n'
            f'revision = "{revision}"\ndown_revision = {previous}\n'
            "branch_labels = None\ndepends_on = None\n\n\n"
            f"def upgrade() -> None:\n{body}\n\n\n"
            f"def downgrade() -> None:\n    op.execute('DROP TABLE step_{i:03d}')\n"
        )
        previous = f'"{revision}"'
    return directory


def session(paths: Sequence[Path]) -> str:
    """A psql script that runs each file in a transaction of its own."""
    return "\\set ON_ERROR_STOP 1\n" + "".join(f"BEGIN;\n\\i {path}\nCOMMIT;\n" for path in paths)


class Databases:
    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.created: list[str] = []

    def fresh(self) -> str:
        name = f"bench_runner_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.admin_url, autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        self.created.append(name)
        return make_url(self.admin_url).set(database=name).render_as_string(hide_password=False)

    def drop_all(self) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as connection:
            for name in self.created:
                connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.created.clear()


def run_checked(
    argv: Sequence[str], env: dict[str, str] | None = None, cwd: Path | None = None
) -> None:
    result = subprocess.run(
        list(argv), env=env, cwd=cwd, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({result.returncode}): {result.stderr[-2000:]}")


def count_tables(url: str) -> int:
    with psycopg.connect(url) as connection:
        row = connection.execute(
            "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'step_%'"
        ).fetchone()
    return int(row[0]) if row else 0


def measure(
    what: str,
    databases: Databases,
    repeats: int,
    command: Callable[[str], None],
    expected_tables: int,
) -> dict[str, Any]:
    times = []
    for _ in range(repeats):
        url = databases.fresh()
        started = time.monotonic()
        command(url)
        times.append(time.monotonic() - started)
        tables = count_tables(url)
        if tables != expected_tables:
            raise RuntimeError(f"{what}: {tables} tables after the run, expected {expected_tables}")
    median = statistics.median(times)
    log(f"runner: {what}: median {median:.2f}s over {repeats} run(s)")
    return {"median_seconds": round(median, 3), "runs": [round(t, 3) for t in times]}


def run(admin_url: str, work: Path, files: int, repeats: int) -> dict[str, Any]:
    psql = find_psql()
    base = work / "runner"
    shutil.rmtree(base, ignore_errors=True)
    sql_dir = base / "sql"
    paths = write_sql_set(sql_dir, files)
    session_script = base / "all-in-one-session.sql"
    session_script.write_text(session(paths))
    # One file: what a run costs before the first migration (process, imports, connection,
    # lock, history table); the difference to 200 files is the cost per file.
    one_dir = base / "sql-one"
    one_script = base / "one-in-a-session.sql"
    one_script.write_text(session(write_sql_set(one_dir, 1)))
    alembic_dir = write_alembic_set(base / "alembic", files)
    lockstep = str(VENV_BIN / "lockstep")
    alembic = str(VENV_BIN / "alembic")
    result_file = base / "result.json"
    databases = Databases(admin_url)

    def env(url: str) -> dict[str, str]:
        return {**os.environ, "DATABASE_URL": url}

    def lockstep_sql(url: str, source: Path = sql_dir) -> None:
        argv = [lockstep, "run", "--tool", "sql", "--source", str(source)]
        run_checked([*argv, "--result-file", str(result_file)], env(url))

    def lockstep_sql_one(url: str) -> None:
        lockstep_sql(url, one_dir)

    def psql_session_one(url: str) -> None:
        run_checked([psql, "-X", "-q", "-f", str(one_script), url])

    def psql_per_file(url: str) -> None:
        for path in paths:
            run_checked([psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-1", "-f", str(path), url])

    def psql_session(url: str) -> None:
        run_checked([psql, "-X", "-q", "-f", str(session_script), url])

    def lockstep_alembic(url: str) -> None:
        source = alembic_dir / "migrations"
        argv = [lockstep, "run", "--tool", "alembic", "--source", str(source)]
        run_checked([*argv, "--result-file", str(result_file)], env(url))

    def alembic_direct(url: str) -> None:
        run_checked([alembic, "-c", "alembic.ini", "upgrade", "head"], env(url), alembic_dir)

    def imports(_: str) -> None:
        run_checked(
            [
                sys.executable,
                "-c",
                "import lockstep.cli.main, lockstep.pod.runner, lockstep.cli.local",
            ]
        )

    try:
        result = {
            "files": files,
            "repeats": repeats,
            "psql": psql,
            "lockstep_sql": measure(
                "lockstep run --tool sql", databases, repeats, lockstep_sql, files
            ),
            # 200 processes: slow, and steady; fewer repeats.
            "psql_per_file": measure(
                "psql -1 per file", databases, max(1, repeats // 2), psql_per_file, files
            ),
            "psql_session": measure("psql, one session", databases, repeats, psql_session, files),
            "lockstep_sql_one_file": measure(
                "lockstep run --tool sql, 1 file", databases, repeats, lockstep_sql_one, 1
            ),
            "psql_session_one_file": measure(
                "psql, one session, 1 file", databases, repeats, psql_session_one, 1
            ),
            "lockstep_alembic": measure(
                "lockstep run --tool alembic", databases, repeats, lockstep_alembic, files
            ),
            "alembic_direct": measure(
                "alembic upgrade head", databases, repeats, alembic_direct, files
            ),
            "lockstep_imports": measure("lockstep imports only", databases, repeats, imports, 0),
        }
    finally:
        databases.drop_all()
    return result
