"""PostgreSQL files run in pipelines (issue 21) and still say exactly which statement failed.

A file of 2,500 statements spans three pipelines of 1,000 (lockstep.pod.sql_pipeline.BATCH).
A failure anywhere (the first statement, the last of a pipeline, the first of the next, the
middle, the very last) must name that statement's line, roll the whole file back and leave no
history row, exactly as one statement per round trip did.
"""

from __future__ import annotations

import threading
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from dbtest import run_sql as run
from dbtest import tables
from lockstep import database, errors
from lockstep.pod import sql_pipeline
from lockstep.sqlfiles import Statement
from migration_backends import migration_backends, sleeping, wait_for

pytestmark = pytest.mark.integration

STATEMENTS = 2_500


def write_file(directory: Path, failing: int | None) -> dict[int, int]:
    """V1 with STATEMENTS statements, each on two lines; ``failing`` (0-based) refers to a
    missing table. Returns each statement's first line."""
    directory.mkdir(exist_ok=True)
    lines = ["-- many inserts\n", "CREATE TABLE piped (id integer PRIMARY KEY, note text);\n"]
    starts = {0: 2}
    for index in range(1, STATEMENTS):
        starts[index] = 2 * index + 1  # two lines before the first INSERT, two lines each
        table = "no_such_table" if index == failing else "piped"
        lines.append(f"INSERT INTO {table} (id, note)\n  VALUES ({index}, '100%; :x {index}');\n")
    (directory / "V1__many.sql").write_text("".join(lines))
    return starts


def count(url: str) -> int:
    engine = database.make_engine(url)
    try:
        with engine.connect() as connection:
            return int(connection.execute(sa.text("SELECT count(*) FROM piped")).scalar_one())
    finally:
        engine.dispose()


def test_postgresql_migration_connections_use_pipelines_unless_a_file_copies(pg_url: str) -> None:
    engine = database.make_engine(pg_url)
    insert = Statement("INSERT INTO t VALUES (1)", 1)
    try:
        with engine.connect() as connection:
            assert sql_pipeline.can_pipeline(connection, [insert])
            # COPY cannot run in a pipeline: such a file goes statement by statement.
            assert not sql_pipeline.can_pipeline(
                connection, [insert, Statement("copy t TO STDOUT", 2)]
            )
    finally:
        engine.dispose()


def test_a_big_file_runs_whole_in_pipelines(pg_url: str, tmp_path: Path) -> None:
    write_file(tmp_path / "sql", failing=None)
    assert sql_pipeline.BATCH < STATEMENTS - 1 < 3 * sql_pipeline.BATCH
    assert run(pg_url, tmp_path / "sql").applied == ["1"]
    assert count(pg_url) == STATEMENTS - 1


@pytest.mark.parametrize(
    "failing",
    [1, sql_pipeline.BATCH - 1, sql_pipeline.BATCH, 1_733, STATEMENTS - 1],
    ids=["first-insert", "last-of-a-pipeline", "first-of-the-next", "middle", "last"],
)
def test_the_failed_statement_is_named_and_the_file_rolled_back(
    pg_url: str, tmp_path: Path, failing: int
) -> None:
    starts = write_file(tmp_path / "sql", failing)
    with pytest.raises(errors.MigrationFailed) as caught:
        run(pg_url, tmp_path / "sql")
    error = caught.value
    assert (error.file, error.line) == ("V1__many.sql", starts[failing])
    assert f"V1__many.sql failed at line {starts[failing]}" in str(error)
    assert f"INSERT INTO no_such_table (id, note) VALUES ({failing}," in str(error)
    assert "rolled the whole file back" in str(error)
    assert "piped" not in tables(pg_url)
    assert "V1" not in str(_history(pg_url))


def test_the_first_statement_failing_is_named(pg_url: str, tmp_path: Path) -> None:
    directory = tmp_path / "sql"
    directory.mkdir()
    (directory / "V1__bad.sql").write_text("\n\nSELEC 1;\nCREATE TABLE never (id int);\n")
    with pytest.raises(errors.MigrationFailed) as caught:
        run(pg_url, directory)
    assert caught.value.line == 3
    assert "syntax error" in str(caught.value)
    assert "never" not in tables(pg_url)


def _history(url: str) -> list[str]:
    if "lockstep_schema_history" not in tables(url):
        return []
    engine = database.make_engine(url)
    try:
        with engine.connect() as connection:
            query = sa.text("SELECT version FROM lockstep_schema_history")
            return [str(v) for (v,) in connection.execute(query)]
    finally:
        engine.dispose()


def test_a_connection_lost_mid_pipeline_is_told_as_lost_and_nothing_stays(
    pg_url: str, tmp_path: Path
) -> None:
    """The backend is terminated while the file's second batch runs (a statement sleeps)."""
    directory = tmp_path / "sql"
    directory.mkdir()
    sleeper = sql_pipeline.BATCH + 10  # in the second pipeline
    statements = ["CREATE TABLE cut (id int);"]
    statements += [f"INSERT INTO cut VALUES ({i});" for i in range(1, sleeper)]
    statements += ["SELECT pg_sleep(30);", "INSERT INTO cut VALUES (0);"]
    (directory / "V1__cut.sql").write_text("\n".join(statements) + "\n")

    def terminate() -> None:
        wait_for(lambda: sleeping(pg_url), 30, "the sleeping statement")
        for pid, _query in migration_backends(pg_url):
            with psycopg.connect(pg_url, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))

    killer = threading.Thread(target=terminate)
    killer.start()
    try:
        with pytest.raises(errors.DatabaseUnavailable) as caught:
            run(pg_url, directory)
    finally:
        killer.join()
    assert f"V1__cut.sql line {sleeper + 1} ran" in str(caught.value)
    assert "nothing of V1__cut.sql stays applied" in str(caught.value)
    assert "cut" not in tables(pg_url)


def test_what_a_file_sets_in_its_session_does_not_reach_the_next_file(
    pg_url: str, tmp_path: Path
) -> None:
    """The session is put back inside each file's transaction (one round trip): custom
    settings, the role and the search path a file set are gone in the next file."""
    engine = database.make_engine(pg_url)
    try:
        with engine.connect() as connection, connection.begin():
            connection.exec_driver_sql(
                "DO $$BEGIN CREATE ROLE lockstep_pipeline_role; "
                "EXCEPTION WHEN duplicate_object THEN NULL; END$$"
            )
            connection.exec_driver_sql("GRANT lockstep_pipeline_role TO CURRENT_USER")
    finally:
        engine.dispose()
    directory = tmp_path / "sql"
    directory.mkdir()
    (directory / "V1__sets.sql").write_text(
        "SET lockstep_test.custom = 'leaked';\nSET search_path = pg_catalog;\n"
        "SET lock_timeout = 0;\nSET ROLE lockstep_pipeline_role;\nSELECT 1;\n"
    )
    (directory / "V2__probe.sql").write_text(
        "CREATE TABLE public.probe AS SELECT "
        "coalesce(current_setting('lockstep_test.custom', true), '') AS custom, "
        "current_user = session_user AS own_role, "
        "current_setting('search_path') AS search_path, "
        "current_setting('lock_timeout') AS lock_timeout;\n"
    )
    assert run(pg_url, directory, statement_lock_timeout="5s").applied == ["1", "2"]
    engine = database.make_engine(pg_url)
    try:
        with engine.connect() as connection:
            probe = connection.exec_driver_sql("SELECT * FROM public.probe").one()
    finally:
        engine.dispose()
    assert tuple(probe) == ("", True, '"$user", public', "5s")
