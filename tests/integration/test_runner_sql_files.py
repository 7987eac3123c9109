"""Real-world SQL files on the built-in runner (issue 16): transaction control in a file,
statements that cannot run in a transaction, session settings that must not leak, files stopped
part-way, and errors that name their cause. PostgreSQL, MariaDB and SQLite."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from dbtest import execute, family, tables
from dbtest import run_sql as run
from lockstep import database, errors

pytestmark = pytest.mark.integration

SLEEP = {"postgresql": "SELECT pg_sleep(30);", "mysql": "DO SLEEP(30);"}
SLEEPING = {
    "postgresql": "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
    "AND starts_with(query, 'SELECT pg_sleep(30)')",
    "mysql": "SELECT id FROM information_schema.processlist WHERE db = DATABASE() "
    "AND LEFT(info, 12) = 'DO SLEEP(30)'",
}
KILL = {"postgresql": "SELECT pg_terminate_backend({})", "mysql": "KILL CONNECTION {}"}


@pytest.fixture
def source(fixtures_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(fixtures_dir / "sql" / "shop", tmp_path / "migrations"))


def rows(url: str, query: str) -> list[tuple[Any, ...]]:
    engine = database.make_engine(url)
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.exec_driver_sql(query)]
    finally:
        engine.dispose()


def history(url: str) -> list[tuple[str, bool]]:
    found = rows(url, "SELECT version, success FROM lockstep_schema_history")
    return sorted((str(v), bool(s)) for v, s in found)


AT_HEAD = [("1", True), ("2", True), ("3", True)]


class TestTransactionControl:
    def test_commit_inside_a_file_is_refused_before_anything_runs(
        self, db_url: str, source: Path
    ) -> None:
        """Today the part before COMMIT stays while the message claims a whole-file rollback."""
        (source / "V4__psql_style.sql").write_text(
            "BEGIN;\nCREATE TABLE committed_part (id INTEGER);\nCOMMIT;\n"
            "INSERT INTO no_such_table (id) VALUES (1);\n"
        )
        with pytest.raises(errors.InvalidSource) as caught:
            run(db_url, source)
        message = str(caught.value)
        assert "V4__psql_style.sql: transaction control" in message
        assert "BEGIN at line 1, COMMIT at line 3" in message
        assert "rolled" not in message.split("refused:")[0]
        assert "committed_part" not in tables(db_url)
        assert "customers" not in tables(db_url)  # refused before V1 ran, too

    def test_a_file_ending_in_rollback_is_never_recorded_as_applied(
        self, db_url: str, source: Path
    ) -> None:
        run(db_url, source)
        (source / "V4__try.sql").write_text(
            "INSERT INTO migration_log (version) VALUES ('4');\nROLLBACK;\n"
        )
        with pytest.raises(errors.InvalidSource, match="ROLLBACK at line 2"):
            run(db_url, source)
        assert history(db_url) == AT_HEAD

    @pytest.mark.parametrize("db_url", ["postgresql", "sqlite"], indirect=True)
    def test_a_whole_file_wrapper_runs_and_a_failure_rolls_back_truly(
        self, db_url: str, source: Path
    ) -> None:
        run(db_url, source)
        (source / "V4__wrapped.sql").write_text(
            "BEGIN;\nCREATE TABLE wrapped (id INTEGER);\n"
            "INSERT INTO no_such_table (id) VALUES (1);\nCOMMIT;\n"
        )
        with pytest.raises(errors.MigrationFailed, match="rolled the whole file back"):
            run(db_url, source)
        assert "wrapped" not in tables(db_url)  # the claim is true
        (source / "V4__wrapped.sql").write_text(
            "BEGIN;\nCREATE TABLE wrapped (id INTEGER);\nCOMMIT;\n"
        )
        assert run(db_url, source).applied == ["4"]
        assert history(db_url) == [*AT_HEAD, ("4", True)]


class TestWithoutTransaction:
    @pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
    def test_concurrently_only_file_runs_without_a_transaction(
        self, db_url: str, source: Path
    ) -> None:
        (source / "V4__index.sql").write_text(
            "CREATE INDEX CONCURRENTLY orders_customer ON orders (customer_id);\n"
            "DROP INDEX CONCURRENTLY orders_customer;\n"
            "CREATE INDEX CONCURRENTLY orders_customer2 ON orders (customer_id);\n"
        )
        assert run(db_url, source).applied == ["1", "2", "3", "4"]
        valid = rows(
            db_url,
            "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE c.relname = 'orders_customer2'",
        )
        assert valid == [(True,)]
        assert history(db_url) == [*AT_HEAD, ("4", True)]
        _next_file_is_transactional_again(db_url, source)

    @pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
    def test_sqlite_vacuum_file(self, db_url: str, source: Path) -> None:
        (source / "V4__vacuum.sql").write_text("VACUUM;")
        assert run(db_url, source).applied == ["1", "2", "3", "4"]
        _next_file_is_transactional_again(db_url, source)

    @pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
    def test_mixed_file_is_refused_before_any_file_runs(self, db_url: str, source: Path) -> None:
        (source / "V4__mixed.sql").write_text(
            "ALTER TABLE orders ADD COLUMN remark TEXT;\n"
            "CREATE INDEX CONCURRENTLY orders_remark ON orders (remark);\n"
        )
        with pytest.raises(errors.InvalidSource) as caught:
            run(db_url, source)
        assert "line 2 (CREATE INDEX CONCURRENTLY) cannot run inside a transaction" in str(
            caught.value
        )
        assert "-- lockstep:transaction=false" in str(caught.value)
        assert "customers" not in tables(db_url)

    @pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
    def test_mixed_file_with_the_header_reports_a_partial_failure_honestly(
        self, db_url: str, source: Path
    ) -> None:
        run(db_url, source)
        (source / "V4__mixed.sql").write_text(
            "-- lockstep:transaction=false\n"
            "ALTER TABLE orders ADD COLUMN remark TEXT;\n"
            "CREATE INDEX CONCURRENTLY orders_remark ON orders (remark);\n"
            "INSERT INTO no_such_table (id) VALUES (1);\n"
            "CREATE TABLE never_created (id INTEGER);\n"
        )
        with pytest.raises(errors.PartiallyApplied) as caught:
            run(db_url, source)
        error = caught.value
        message = str(error)
        assert (error.version, error.ran_lines, error.failed_line) == ("4", [2, 3], 4)
        assert "where the file ran without a transaction" in message
        assert "the 1 statement(s) after it (line(s) 5) did not run" in message
        assert history(db_url) == [*AT_HEAD, ("4", False)]
        with pytest.raises(errors.PartiallyApplied) as again:
            run(db_url, source)
        assert "V4__mixed.sql stopped part-way" in str(again.value)
        assert "2 of its 4 statement(s) completed (line(s) 2, 3)" in str(again.value)
        assert "the statement at line 4" in str(again.value)
        assert "DELETE FROM lockstep_schema_history WHERE version = '4'" in str(again.value)


def _next_file_is_transactional_again(url: str, source: Path) -> None:
    """After a file without a transaction, the next file runs in one again."""
    (source / "V5__broken.sql").write_text(
        "CREATE TABLE after_it (id INTEGER);\nINSERT INTO no_such_table (id) VALUES (1);\n"
    )
    with pytest.raises(errors.MigrationFailed, match="rolled the whole file back"):
        run(url, source)
    assert "after_it" not in tables(url)


class TestInterrupted:
    """A run that loses its connection part-way (a killed pod's backend is ended the same way)."""

    @pytest.mark.parametrize("db_url", ["mariadb", "postgresql"], indirect=True)
    @pytest.mark.parametrize("first", [True, False], ids=["first-statement", "later-statement"])
    def test_file_run_statement_by_statement_interrupted_is_refused_with_exact_advice(
        self, db_url: str, source: Path, first: bool
    ) -> None:
        """MariaDB today: 'it was the file's first statement, so nothing of the file ran' - false.
        PostgreSQL: the same for a file that runs without a transaction."""
        run(db_url, source)
        header = "-- lockstep:transaction=false\n" if family(db_url) == "postgresql" else ""
        head = "" if first else "CREATE TABLE before_sleep (id INTEGER);\n"
        sleep = SLEEP[family(db_url)]
        (source / "V4__slow.sql").write_text(
            f"{header}{head}{sleep}\nCREATE TABLE after_sleep (id INTEGER);\n"
        )
        error = _kill_while_sleeping(db_url, source)
        assert isinstance(error, errors.DatabaseUnavailable), error
        assert "was lost while V4__slow.sql line" in str(error)
        assert "recorded V4__slow.sql as stopped part-way" in str(error)
        with pytest.raises(errors.PartiallyApplied) as caught:
            run(db_url, source)
        message = str(caught.value)
        offset = 1 if header else 0
        sleep_line = (1 if first else 2) + offset
        done = (
            "none of its 2 statement(s) completed"
            if first
            else f"1 of its 3 statement(s) completed (line(s) {1 + offset})"
        )
        assert done in message
        shown = sleep.rstrip(";")
        assert f"the statement at line {sleep_line} ({shown}) did not complete" in message
        assert f"line(s) {sleep_line + 1} did not run" in message
        assert "DELETE FROM lockstep_schema_history WHERE version = '4'" in message
        assert "after_sleep" not in tables(db_url)
        assert ("before_sleep" in tables(db_url)) is not first  # what the message says ran

    @pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
    def test_lost_connection_in_a_transactional_file_is_not_a_file_error(
        self, db_url: str, source: Path
    ) -> None:
        run(db_url, source)
        (source / "V4__slow.sql").write_text(
            f"CREATE TABLE before_sleep (id INTEGER);\n{SLEEP['postgresql']}\n"
        )
        error = _kill_while_sleeping(db_url, source)
        assert isinstance(error, errors.DatabaseUnavailable), error
        assert "nothing of V4__slow.sql stays applied" in str(error)
        assert "Fix the file" not in str(error)
        assert "before_sleep" not in tables(db_url)
        assert history(db_url) == AT_HEAD


def _kill_while_sleeping(url: str, source: Path) -> Exception | None:
    outcome: list[Exception | None] = []

    def migrate() -> None:
        try:
            run(url, source)
            outcome.append(None)
        except Exception as error:  # noqa: BLE001 - the test looks at it
            outcome.append(error)

    thread = threading.Thread(target=migrate)
    thread.start()
    deadline = time.monotonic() + 20
    sleeping: list[tuple[Any, ...]] = []
    while not sleeping and time.monotonic() < deadline:
        time.sleep(0.1)
        sleeping = rows(url, SLEEPING[family(url)])
    assert sleeping, "the migration never reached its sleep"
    execute(url, KILL[family(url)].format(sleeping[0][0]))
    thread.join(30)
    assert outcome, "the run did not end after its connection was killed"
    return outcome[0]


class TestSessionDoesNotLeak:
    @pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
    def test_search_path_and_lock_timeout_stay_in_their_file(
        self, db_url: str, source: Path
    ) -> None:
        """Today the history insert goes to (or fails in) the other schema, and V5 runs
        without a statement lock timeout."""
        (source / "V4__app_schema.sql").write_text(
            "CREATE SCHEMA app;\nSET search_path = app;\nSET lock_timeout = 0;\n"
            "CREATE TABLE app_things (id INTEGER);\n"
        )
        (source / "V5__probe.sql").write_text(
            "CREATE TABLE public.probe AS SELECT current_setting('lock_timeout') AS lock_timeout,"
            " current_setting('search_path') AS search_path;\n"
        )
        assert run(db_url, source).applied == ["1", "2", "3", "4", "5"]
        assert rows(db_url, "SELECT lock_timeout, search_path FROM public.probe") == [
            ("5s", '"$user", public')
        ]
        assert rows(db_url, "SELECT count(*) FROM public.lockstep_schema_history") == [(5,)]
        assert rows(
            db_url,
            "SELECT count(*) FROM information_schema.tables "
            "WHERE table_schema = 'app' AND table_name = 'lockstep_schema_history'",
        ) == [(0,)]

    @pytest.mark.parametrize("db_url", ["mariadb"], indirect=True)
    def test_mariadb_session_variables_stay_in_their_file(
        self, db_url: str, source: Path, mariadb_admin_url: str
    ) -> None:
        (source / "V4__loosen.sql").write_text(
            "SET SESSION lock_wait_timeout = 1000;\nSET SESSION foreign_key_checks = 0;\n"
            "SET SESSION sql_mode = 'ANSI_QUOTES';\n"
        )
        (source / "V5__probe.sql").write_text(
            "CREATE TABLE probe AS SELECT @@session.lock_wait_timeout AS lock_wait, "
            "@@session.foreign_key_checks AS fk, @@session.sql_mode LIKE '%ANSI_QUOTES%' AS ansi;"
        )
        assert run(db_url, source).applied == ["1", "2", "3", "4", "5"]
        assert rows(db_url, "SELECT lock_wait, fk, ansi FROM probe") == [(5, 1, 0)]


class TestOwnQueries:
    @pytest.mark.parametrize("db_url", ["postgresql", "sqlite"], indirect=True)
    def test_a_failing_bookkeeping_query_says_which(self, db_url: str, source: Path) -> None:
        execute(db_url, "CREATE TABLE lockstep_schema_history (version VARCHAR(50) PRIMARY KEY)")
        with pytest.raises(errors.DatabaseQueryFailed) as caught:
            run(db_url, source)
        message = str(caught.value)
        assert "while trying to read" in message
        assert "lockstep_schema_history" in message
        assert "lockstep_schema_history.description" in message  # the database's own words


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_copy_from_stdin_is_refused_as_a_source_problem(db_url: str, source: Path) -> None:
    """Today: DatabaseUnavailable, 'run it again once the database is reachable'."""
    (source / "V4__data.sql").write_text(
        "COPY public.customers (id, name) FROM stdin;\n2\tGrace\n\\.\n"
    )
    with pytest.raises(errors.InvalidSource) as caught:
        run(db_url, source)
    assert "V4__data.sql line 1: COPY ... FROM stdin" in str(caught.value)
    assert "reachable" not in str(caught.value)
