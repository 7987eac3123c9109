"""The migration sources bench/runner_overhead.py applies: versioned SQL files, the same
statements as Alembic revisions, one big file of INSERTs, and a local-mode YAML that carries a
file in a ConfigMap. Written fresh for each bench run, so the floors (psql, Alembic) and
Lockstep read the very same files; and the fresh databases they go into."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

from benchlib.common import REPO

EXAMPLE_ENV = REPO / "examples" / "alembic-postgresql" / "migrations" / "env.py"


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


def write_big_file(directory: Path, inserts: int) -> Path:
    """One migration file: a table and ``inserts`` INSERTs of about 100 bytes each."""
    directory.mkdir(parents=True, exist_ok=True)
    rows = "".join(
        f"INSERT INTO step_big (id, name, payload) VALUES ({i}, 'name {i}', "
        f"'{'payload ' * 3}{i:08d}');\n"
        for i in range(1, inserts + 1)
    )
    path = directory / "V1__big.sql"
    path.write_text(
        "CREATE TABLE step_big (id integer PRIMARY KEY, name text NOT NULL, payload text);\n" + rows
    )
    return path


CONFIG_MAP_LIMIT = 1_048_576  # bytes of data in one ConfigMap (Kubernetes, and local mode)


def write_apply_file(directory: Path) -> Path:
    """The biggest file of the same INSERTs that fits in one ConfigMap, with room to spare."""
    inserts = 10_000
    while (path := write_big_file(directory, inserts)).stat().st_size > CONFIG_MAP_LIMIT - 50_000:
        inserts -= 500
    return path


def write_apply_yaml(path: Path, sql_file: Path) -> Path:
    """A local-mode file: the SQL file in a ConfigMap and a DatabaseMigration that runs it."""
    body = sql_file.read_text()
    indented = "".join(f"    {line}\n" for line in body.splitlines())
    path.write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: big-migrations\ndata:\n"
        f"  {sql_file.name}: |\n{indented}"
        "---\napiVersion: lockstep.dev/v1alpha1\nkind: DatabaseMigration\n"
        "metadata:\n  name: big\nspec:\n  tool: sql\n"
        "  source:\n    configMapRef:\n      name: big-migrations\n  target: head\n"
        "  database:\n    engine: postgresql\n"
        "    urlSecretRef:\n      name: big-db\n      key: url\n"
    )
    return path


def session(paths: Sequence[Path]) -> str:
    """A psql script that runs each file in a transaction of its own."""
    return "\\set ON_ERROR_STOP 1\n" + "".join(f"BEGIN;\n\\i {path}\nCOMMIT;\n" for path in paths)


def find_psql() -> str:
    found = shutil.which("psql")
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/psql"))
    if not candidates:
        raise RuntimeError("psql not found (apt-get install postgresql-client)")
    return str(candidates[-1])


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


def count_tables(url: str) -> int:
    with psycopg.connect(url) as connection:
        row = connection.execute(
            "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'step_%'"
        ).fetchone()
    return int(row[0]) if row else 0
