"""The built-in runner with versioned SQL files, on PostgreSQL, MariaDB and SQLite."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from sqlalchemy.engine import make_url

from dbtest import column_names as columns
from dbtest import execute, family, tables
from dbtest import run_sql as run
from lockstep import database, errors, version_tables
from lockstep.contract import report as termination
from lockstep.pod import lock
from lockstep.pod.run_request import RunResult

pytestmark = pytest.mark.integration

SLEEP_ONE_SECOND = {
    "postgresql": "SELECT pg_sleep(1);",
    "mysql": "DO SLEEP(1);",
    # No sleep in SQLite: count to a few million instead.
    "sqlite": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 2000000) "
    "SELECT count(*) FROM c;",
}


@pytest.fixture
def source(fixtures_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the shop migrations (V1-V3 with U files) that a test may edit."""
    return Path(shutil.copytree(fixtures_dir / "sql" / "shop", tmp_path / "migrations"))


def rows(url: str, query: str) -> list[tuple[Any, ...]]:
    engine = database.make_engine(url)
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(sa.text(query))]
    finally:
        engine.dispose()


def history(url: str) -> list[tuple[str, bool]]:
    found = rows(url, "SELECT version, success FROM lockstep_schema_history")
    return sorted((str(v), bool(s)) for v, s in found)


def runs_per_version(url: str) -> dict[str, int]:
    return dict(Counter(str(v) for (v,) in rows(url, "SELECT version FROM migration_log")))


def applied_revision(url: str) -> str | None:
    engine = database.make_engine(url)
    try:
        with engine.connect() as connection:
            return version_tables.read_applied_revision("sql", connection)
    finally:
        engine.dispose()


SHOP_TABLES = {"customers", "orders", "migration_log", "lockstep_schema_history"}
AT_HEAD = [("1", True), ("2", True), ("3", True)]


class TestUp:
    def test_to_head(self, db_url: str, source: Path) -> None:
        result = run(db_url, source)
        assert (result.direction, result.from_revision, result.to_revision) == ("up", None, "3")
        assert result.applied == ["1", "2", "3"]
        assert result.lock_wait_seconds < 1
        assert result.duration_seconds > 0
        assert tables(db_url) == SHOP_TABLES
        assert "email" in columns(db_url, "customers")
        assert history(db_url) == AT_HEAD
        assert runs_per_version(db_url) == {"1": 1, "2": 1, "3": 1}
        assert rows(db_url, "SELECT name FROM customers") == [("Ada; the first customer",)]
        assert applied_revision(db_url) == "3"

    def test_rerun_at_head_does_nothing(self, db_url: str, source: Path) -> None:
        run(db_url, source)
        again = run(db_url, source)
        assert (again.direction, again.from_revision, again.to_revision) == ("none", "3", "3")
        assert again.applied == []
        assert runs_per_version(db_url) == {"1": 1, "2": 1, "3": 1}

    def test_to_a_version_then_on_to_head(self, db_url: str, source: Path) -> None:
        first = run(db_url, source, target="2")
        assert (first.applied, first.to_revision) == (["1", "2"], "2")
        assert "email" not in columns(db_url, "customers")
        second = run(db_url, source, target="head")
        assert (second.from_revision, second.applied, second.to_revision) == ("2", ["3"], "3")

    def test_sql_text_is_sent_as_written(self, db_url: str, source: Path) -> None:
        # '%' and ':name' would be bind-parameter markers if the text went through a formatter.
        (source / "V4__literal_text.sql").write_text(
            "INSERT INTO customers (id, name) VALUES (2, '100% :not_a_parameter %s');"
        )
        run(db_url, source)
        assert rows(db_url, "SELECT name FROM customers WHERE id = 2") == [
            ("100% :not_a_parameter %s",)
        ]

    def test_result_json_is_small_and_complete(self, db_url: str, source: Path) -> None:
        payload = json.loads(run(db_url, source).to_json())
        assert payload["tool"] == "sql"
        assert payload["direction"] == "up"
        assert (payload["from"], payload["to"]) == (None, "3")
        assert payload["applied"] == ["1", "2", "3"]
        assert payload["appliedCount"] == 3


class TestDown:
    def test_to_a_version(self, db_url: str, source: Path) -> None:
        run(db_url, source)
        result = run(db_url, source, target="1", allow_downgrade=True)
        assert (result.direction, result.from_revision, result.to_revision) == ("down", "3", "1")
        assert result.applied == ["3", "2"]
        assert tables(db_url) == SHOP_TABLES - {"orders"}
        assert "email" not in columns(db_url, "customers")
        assert history(db_url) == [("1", True)]
        assert runs_per_version(db_url) == {"1": 1}
        assert applied_revision(db_url) == "1"

    @pytest.mark.parametrize("target", ["0", "base"])
    def test_to_nothing(self, db_url: str, source: Path, target: str) -> None:
        run(db_url, source)
        result = run(db_url, source, target=target, allow_downgrade=True)
        assert (result.direction, result.to_revision, result.applied) == (
            "down",
            None,
            ["3", "2", "1"],
        )
        assert tables(db_url) == {"lockstep_schema_history"}
        assert history(db_url) == []
        assert applied_revision(db_url) is None
        # And back up again from nothing.
        assert run(db_url, source).applied == ["1", "2", "3"]

    def test_forbidden_unless_allowed(self, db_url: str, source: Path) -> None:
        run(db_url, source)
        with pytest.raises(errors.DowngradeForbidden) as caught:
            run(db_url, source, target="1")
        message = str(caught.value)
        assert caught.value.reason == "DowngradeForbidden"
        assert "is at version 3 and the target 1 is lower" in message
        assert "would undo 3, 2" in message
        assert "spec.downgrade" in message
        assert history(db_url) == AT_HEAD

    def test_missing_undo_file_is_refused_before_anything_runs(
        self, db_url: str, source: Path
    ) -> None:
        run(db_url, source)
        (source / "U2__create_orders.sql").unlink()
        with pytest.raises(errors.InvalidSource) as caught:
            run(db_url, source, target="1", allow_downgrade=True)
        assert "U2__*.sql (undoes V2__create_orders.sql)" in str(caught.value)
        assert history(db_url) == AT_HEAD
        assert "email" in columns(db_url, "customers")  # U3 did not run either


class TestRefusals:
    def test_unknown_target_lists_the_known_versions(self, db_url: str, source: Path) -> None:
        with pytest.raises(errors.InvalidTarget) as caught:
            run(db_url, source, target="7")
        assert "known versions: 1, 2, 3" in str(caught.value)
        assert caught.value.reason == "InvalidTarget"
        assert tables(db_url) == set()  # refused before touching the database

    def test_changed_applied_file(self, db_url: str, source: Path) -> None:
        run(db_url, source)
        v2 = source / "V2__create_orders.sql"
        recorded = rows(db_url, "SELECT checksum FROM lockstep_schema_history WHERE version = '2'")
        v2.write_text(v2.read_text() + "\n-- an innocent-looking edit\n")
        (source / "V4__more.sql").write_text("INSERT INTO migration_log (version) VALUES ('4');")
        with pytest.raises(errors.ChecksumMismatch) as caught:
            run(db_url, source)
        message = str(caught.value)
        assert "V2__create_orders.sql changed after it was applied" in message
        assert str(recorded[0][0])[:12] in message
        assert "new V file" in message
        assert runs_per_version(db_url) == {"1": 1, "2": 1, "3": 1}  # nothing re-run, V4 not run

    def test_new_file_below_the_applied_version(self, db_url: str, source: Path) -> None:
        run(db_url, source)
        (source / "V1.5__late.sql").write_text("SELECT 1;")
        with pytest.raises(errors.InvalidSource, match=r"V1\.5__late\.sql sorts below version 3"):
            run(db_url, source)

    def test_applied_version_without_its_file(self, db_url: str, source: Path) -> None:
        run(db_url, source)
        (source / "V3__add_customer_email.sql").unlink()
        (source / "U3__add_customer_email.sql").unlink()
        with pytest.raises(errors.InvalidSource, match=r"has version\(s\) 3 applied"):
            run(db_url, source)

    def test_empty_source(self, db_url: str, tmp_path: Path) -> None:
        with pytest.raises(errors.InvalidSource, match="holds no V<version>"):
            run(db_url, tmp_path)

    def test_malformed_statement_lock_timeout(self, sqlite_url: str, source: Path) -> None:
        with pytest.raises(errors.LockstepError) as caught:
            run(sqlite_url, source, statement_lock_timeout="5 seconds")
        assert caught.value.reason == "InvalidSpec"

    def test_bad_password_is_never_shown(self, pg_url: str, source: Path) -> None:
        url = make_url(pg_url).set(password="Hunter2-secret").render_as_string(hide_password=False)
        with pytest.raises(errors.DatabaseUnavailable) as caught:
            run(url, source)
        assert "Hunter2-secret" not in str(caught.value)
        assert caught.value.reason == "DatabaseUnavailable"


BROKEN_V4 = (
    "CREATE TABLE half_done (id INTEGER);\n"
    "INSERT INTO half_done (id) VALUES (1);\n"
    "\n"
    "INSERT INTO no_such_table (id) VALUES (1);\n"
    "CREATE TABLE never_created (id INTEGER);\n"
)


class TestFailures:
    @pytest.mark.parametrize("db_url", ["postgresql", "sqlite"], indirect=True)
    def test_failed_file_is_rolled_back_where_ddl_is_transactional(
        self, db_url: str, source: Path
    ) -> None:
        run(db_url, source)
        (source / "V4__broken.sql").write_text(BROKEN_V4)
        with pytest.raises(errors.MigrationFailed) as caught:
            run(db_url, source)
        error = caught.value
        assert (error.reason, error.file, error.line) == ("MigrationFailed", "V4__broken.sql", 4)
        assert "V4__broken.sql failed at line 4" in str(error)
        assert "no_such_table" in str(error)
        assert "INSERT INTO no_such_table (id) VALUES (1)" in str(error)
        assert "rolled the whole file back" in str(error)
        assert "half_done" not in tables(db_url)
        assert history(db_url) == AT_HEAD
        # Fixed, it runs.
        (source / "V4__broken.sql").write_text("CREATE TABLE half_done (id INTEGER);")
        assert run(db_url, source).applied == ["4"]

    def test_mariadb_reports_a_partly_applied_file_and_refuses_to_go_on(
        self, mariadb_url: str, source: Path
    ) -> None:
        run(mariadb_url, source)
        (source / "V4__broken.sql").write_text(BROKEN_V4)
        with pytest.raises(errors.PartiallyApplied) as caught:
            run(mariadb_url, source)
        error = caught.value
        message = str(error)
        assert (error.version, error.ran_lines, error.failed_line) == ("4", [1, 2], 4)
        assert "V4__broken.sql was only partly applied" in message
        assert "2 statement(s) ran (starting at line(s) 1, 2)" in message
        assert "the statement at line 4 failed" in message
        assert "no_such_table" in message
        assert "the 1 statement(s) after it (line(s) 5) did not run" in message
        assert "DELETE FROM lockstep_schema_history WHERE version = '4'" in message
        assert "half_done" in tables(mariadb_url)
        assert history(mariadb_url) == [*AT_HEAD, ("4", False)]
        # Fixing the file is not enough: a person must repair the database first.
        (source / "V4__broken.sql").write_text("CREATE TABLE half_done (id INTEGER);")
        with pytest.raises(errors.PartiallyApplied, match="failed part-way") as again:
            run(mariadb_url, source)
        assert "2 statement(s) of V4__broken.sql as it ran then completed" in str(again.value)
        execute(
            mariadb_url,
            "DROP TABLE half_done",
            "DELETE FROM lockstep_schema_history WHERE version = '4'",
        )
        assert run(mariadb_url, source).applied == ["4"]

    def test_mariadb_partly_applied_undo_file(self, mariadb_url: str, source: Path) -> None:
        run(mariadb_url, source)
        (source / "U3__add_customer_email.sql").write_text(
            "ALTER TABLE customers DROP COLUMN email;\nDELETE FROM no_such_table;\n"
        )
        with pytest.raises(errors.PartiallyApplied) as caught:
            run(mariadb_url, source, target="2", allow_downgrade=True)
        assert "U3__add_customer_email.sql (while going down) was only partly applied" in str(
            caught.value
        )
        assert history(mariadb_url) == [("1", True), ("2", True), ("3", False)]
        with pytest.raises(
            errors.PartiallyApplied, match=r"U3__add_customer_email.sql stopped part-way"
        ) as again:
            run(mariadb_url, source)
        assert "1 of its 2 statement(s) completed (line(s) 1)" in str(again.value)
        assert "the statement at line 2 (DELETE FROM no_such_table) did not complete" in str(
            again.value
        )
        assert "SET success = true" in str(again.value)
        with pytest.raises(errors.PartiallyApplied):
            run(mariadb_url, source)

    def test_mariadb_failure_of_the_first_statement_changes_nothing(
        self, mariadb_url: str, source: Path
    ) -> None:
        run(mariadb_url, source)
        (source / "V4__broken.sql").write_text("INSERT INTO no_such_table (id) VALUES (1);")
        with pytest.raises(errors.MigrationFailed, match="first statement, so nothing"):
            run(mariadb_url, source)
        assert history(mariadb_url) == AT_HEAD

    def test_statement_lock_timeout(self, db_url: str, source: Path) -> None:
        """A migration gives up quickly when the application holds the table."""
        run(db_url, source)
        (source / "V4__alter_customers.sql").write_text(
            "ALTER TABLE customers ADD COLUMN phone VARCHAR(40);"
        )
        engine = database.make_engine(db_url)
        with engine.connect() as application:
            # An open transaction that touched the table: the ALTER must wait for it.
            if family(db_url) == "sqlite":
                application.exec_driver_sql("UPDATE customers SET name = name")
            else:
                application.exec_driver_sql("SELECT * FROM customers")
            started = time.monotonic()
            with pytest.raises(errors.MigrationFailed) as caught:
                run(db_url, source, statement_lock_timeout="300ms")
            assert time.monotonic() - started < 5
            application.rollback()
        engine.dispose()
        assert "statement lock timeout" in str(caught.value)
        assert history(db_url) == AT_HEAD


class TestConcurrency:
    def test_two_runners_at_once_apply_each_migration_once(self, db_url: str, source: Path) -> None:
        (source / "V4__slow.sql").write_text(
            SLEEP_ONE_SECOND[family(db_url)] + "\nINSERT INTO migration_log (version) VALUES ('4');"
        )
        start = threading.Barrier(2)
        results: list[RunResult] = []
        errors: list[Exception] = []

        def one_runner() -> None:
            start.wait()
            try:
                results.append(run(db_url, source, lock_wait_seconds=30))
            except Exception as error:  # noqa: BLE001 - reported by the assertion below
                errors.append(error)

        threads = [threading.Thread(target=one_runner) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert errors == []
        assert sorted(r.direction for r in results) == ["none", "up"]
        assert sorted(v for r in results for v in r.applied) == ["1", "2", "3", "4"]
        assert runs_per_version(db_url) == {"1": 1, "2": 1, "3": 1, "4": 1}
        waiter = next(r for r in results if r.direction == "none")
        # It queued behind the slow migration (SQLite's stand-in for sleep is quicker).
        assert waiter.lock_wait_seconds > (0.5 if family(db_url) != "sqlite" else 0.1)

    def test_lock_held_longer_than_the_wait(self, db_url: str, source: Path) -> None:
        identity = database.identity_from_url(db_url)
        engine = database.make_engine(db_url)
        with (
            engine.connect() as other,
            lock.hold_advisory_lock(other, identity, 0),
            pytest.raises(lock.LockTimeout) as caught,
        ):
            run(db_url, source, lock_wait_seconds=0.5)
        engine.dispose()
        assert caught.value.reason == "LockTimeout"
        assert "timed out after" in str(caught.value)
        assert "lockstep_schema_history" not in tables(db_url)


class TestResultJson:
    def test_long_applied_lists_are_truncated(self) -> None:
        result = RunResult(
            tool="sql",
            direction="up",
            from_revision=None,
            to_revision="1000",
            applied=[str(v) for v in range(1, 1001)],
            duration_seconds=12.3456,
            lock_wait_seconds=0.5,
        )
        text = result.to_json()
        payload = json.loads(text)
        assert len(text.encode()) <= termination.RESULT_BUDGET
        assert payload["appliedCount"] == 1000
        assert payload["appliedTruncated"] is True
        assert payload["applied"][:3] == ["1", "2", "3"]
        assert payload["durationSeconds"] == 12.346

    def test_short_lists_are_whole(self) -> None:
        result = RunResult("alembic", "none", "abc", "abc", [], 0.1, 0.0)
        assert "appliedTruncated" not in json.loads(result.to_json())


class TestQuickstartExample:
    def test_its_sql_runs_up_and_down(self, db_url: str, tmp_path: Path) -> None:
        example = Path(__file__).resolve().parents[2] / "examples" / "quickstart" / "migration.yaml"
        documents = list(yaml.safe_load_all(example.read_text()))
        config_map = next(d for d in documents if d["kind"] == "ConfigMap")
        source = tmp_path / "quickstart"
        source.mkdir()
        for name, text in config_map["data"].items():
            (source / name).write_text(text)
        assert run(db_url, source).applied == ["1", "2"]
        assert {"customers", "orders"} <= tables(db_url)
        down = run(db_url, source, target="0", allow_downgrade=True)
        assert down.applied == ["2", "1"]
        assert tables(db_url) == {"lockstep_schema_history"}


class TestLockHeldBySidecar:
    def test_runner_can_leave_the_lock_to_a_sidecar(self, db_url: str, source: Path) -> None:
        """In a Job pod the lock sidecar holds the lock; the runner must not wait for it."""
        identity = database.identity_from_url(db_url)
        engine = database.make_engine(db_url)
        with engine.connect() as sidecar, lock.hold_advisory_lock(sidecar, identity, 0):
            result = run(db_url, source, lock_wait_seconds=0, take_lock=False)
        engine.dispose()
        assert (result.applied, result.lock_wait_seconds) == (["1", "2", "3"], 0.0)
