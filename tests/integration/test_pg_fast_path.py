"""The PostgreSQL fast path of `lockstep run --tool sql` (lockstep.pod.pg_run) on a real server.

The runner tests (test_runner_sql*.py) run through it already, on the same assertions as the
SQLAlchemy path; these check what only the fast path does: no SQLAlchemy in the process, and
several files per pipeline with a failure in the middle of one (a small BATCH puts the failure
in a later pipeline than the files before it, inside a file that spans two pipelines).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from dbtest import run_sql
from lockstep import errors
from lockstep.pod import pg_run

pytestmark = pytest.mark.integration

RUN = (
    "import sys\n"
    "from lockstep.cli.main import main\n"
    "code = main(['run', '--tool', 'sql', '--source', sys.argv[1], '--result-file', sys.argv[2]])\n"
    "print('sqlalchemy' in sys.modules)\n"
    "sys.exit(code)\n"
)


def _files(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir()
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


def _query(url: str, sql: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url) as connection:
        return connection.execute(sql).fetchall()  # type: ignore[arg-type]  # test literals


def test_a_run_imports_no_sqlalchemy_and_records_every_file(pg_url: str, tmp_path: Path) -> None:
    source = _files(
        tmp_path / "sql",
        {
            f"V{i}__t{i}.sql": f"CREATE TABLE t{i} (id int);\nINSERT INTO t{i} VALUES ({i});\n"
            for i in range(1, 6)
        },
    )
    result_file = tmp_path / "result.json"
    done = subprocess.run(
        [sys.executable, "-c", RUN, str(source), str(result_file)],
        capture_output=True,
        text=True,
        check=False,
        env={"DATABASE_URL": pg_url, "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "False", done.stdout
    result = json.loads(result_file.read_text())
    assert result["applied"] == ["1", "2", "3", "4", "5"]
    rows = _query(
        pg_url,
        "SELECT version, success, execution_ms >= 0, applied_at IS NOT NULL, running_file "
        "FROM lockstep_schema_history ORDER BY version",
    )
    assert rows == [(str(i), True, True, True, None) for i in range(1, 6)]


def test_a_failure_in_a_later_pipeline_keeps_the_files_before_it(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pg_run, "BATCH", 4)  # every file spans two pipelines or more
    files = {
        "V1__a.sql": "CREATE TABLE a (id int);\nINSERT INTO a VALUES (1);\n",
        "V2__b.sql": "CREATE TABLE b (id int);\nINSERT INTO b VALUES (1);\n",
        "V3__c.sql": "CREATE TABLE c (id int);\nINSERT INTO c VALUES (1);\n"
        "INSERT INTO nowhere VALUES (1);\nCREATE TABLE c2 (id int);\n",
        "V4__d.sql": "CREATE TABLE d (id int);\n",
    }
    source = _files(tmp_path / "sql", files)
    with pytest.raises(errors.MigrationFailed) as caught:
        run_sql(pg_url, source)
    message = str(caught.value)
    assert message.startswith("V3__c.sql failed at line 3 on postgresql database")
    assert 'relation "nowhere" does not exist' in message
    assert "(statement: INSERT INTO nowhere VALUES (1))" in message
    tables = {name for (name,) in _query(pg_url, "SELECT tablename FROM pg_tables")}
    assert {"a", "b"} <= tables
    assert not {"c", "c2", "d"} & tables  # V3 rolled back whole, V4 never sent
    history = _query(pg_url, "SELECT version FROM lockstep_schema_history ORDER BY version")
    assert history == [("1",), ("2",)]
    (source / "V3__c.sql").write_text("CREATE TABLE c (id int);\n")
    assert run_sql(pg_url, source).applied == ["3", "4"]


def test_a_failed_history_write_names_lockstep_s_query(pg_url: str, tmp_path: Path) -> None:
    source = _files(
        tmp_path / "sql",
        {
            "V1__a.sql": "CREATE TABLE a (id int);\n",
            # The file takes away the run's right to write its history row.
            "V2__b.sql": "CREATE TABLE b (id int);\n"
            "CREATE FUNCTION no_rows() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'no history today'; END $$;\n"
            "CREATE TRIGGER no_rows BEFORE INSERT ON lockstep_schema_history "
            "FOR EACH ROW EXECUTE FUNCTION no_rows();\n",
        },
    )
    with pytest.raises(errors.DatabaseQueryFailed) as caught:
        run_sql(pg_url, source)
    assert "while trying to record V2__b.sql in lockstep_schema_history" in str(caught.value)
    assert "no history today" in str(caught.value)
    tables = {name for (name,) in _query(pg_url, "SELECT tablename FROM pg_tables")}
    assert "a" in tables and "b" not in tables  # V2 went with its row


def test_a_failed_history_query_is_named_as_the_full_path_names_it(
    pg_url: str, tmp_path: Path
) -> None:
    source = _files(tmp_path / "sql", {"V1__a.sql": "CREATE TABLE a (id int);\n"})
    with pytest.raises(errors.DatabaseQueryFailed) as caught:
        run_sql(pg_url, source, version_table_schema="nowhere")
    assert (
        "while trying to create nowhere.lockstep_schema_history if it is missing: "
        'schema "nowhere" does not exist'
    ) in str(caught.value)
