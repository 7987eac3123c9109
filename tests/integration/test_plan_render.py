"""Plans: what a run would execute, classified and hashed; `lockstep plan`; `run --expect-plan`.

On PostgreSQL, MariaDB and SQLite: rendering reads the database and changes nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from dbtest import column_names, tables
from lockstep import classify, database, errors, version_tables
from lockstep.contract import report as termination
from lockstep.pod import run_plan, runner
from lockstep.pod.run_plan import Plan
from lockstep.pod.run_request import RunRequest, RunResult, Tool

pytestmark = pytest.mark.integration

SHOP_FILES = ["V1__create_customers.sql", "V2__create_orders.sql", "V3__add_customer_email.sql"]
SHOP_SCRIPTS = ["a1000001_customers.py", "a1000002_orders.py", "a1000003_customer_email.py"]
DROP_EMAIL = (
    "-- Nobody reads the e-mail address any more.\n\nALTER TABLE customers DROP COLUMN email;\n"
)
ADD_COUPONS = "CREATE TABLE coupons (\n    code VARCHAR(20) PRIMARY KEY\n);\n"
ONLINE_ONLY_ENV = '''"""An env.py that only knows online mode (Lockstep's connection)."""

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection)
with context.begin_transaction():
    context.run_migrations()
'''


@pytest.fixture
def source(fixtures_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the shop's SQL migrations (V1-V3 with U files)."""
    return Path(shutil.copytree(fixtures_dir / "sql" / "shop", tmp_path / "migrations"))


@pytest.fixture
def scripts(fixtures_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the shop's Alembic scripts."""
    return Path(shutil.copytree(fixtures_dir / "alembic" / "shop", tmp_path / "alembic"))


def request_for(url: str, source: Path, tool: Tool = "sql", **options: Any) -> RunRequest:
    settings: dict[str, Any] = {"lock_wait_seconds": 10.0, "statement_lock_timeout": "5s"}
    settings.update(options)
    return RunRequest(tool=tool, source_dir=source, database_url=url, **settings)


def render(
    url: str, source: Path, tool: Tool = "sql", salt: str = "spec-1", **options: Any
) -> Plan:
    return run_plan.render_plan(request_for(url, source, tool, **options), salt=salt)


def migrate(url: str, source: Path, tool: Tool = "sql", **options: Any) -> RunResult:
    return runner.run(request_for(url, source, tool, **options))


def applied_revision(url: str, tool: str = "sql") -> str | None:
    engine = database.make_engine(url)
    try:
        with engine.connect() as connection:
            return version_tables.read_applied_revision(tool, connection)
    finally:
        engine.dispose()


def lockstep_cli(url: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    if url is not None:
        env["DATABASE_URL"] = url
    return subprocess.run(
        [sys.executable, "-m", "lockstep.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def assert_no_password(url: str, completed: subprocess.CompletedProcess[str]) -> None:
    password = make_url(url).password
    if password:
        assert password not in completed.stdout
        assert password not in completed.stderr


# --------------------------------------------------------------------------- tool sql


class TestSqlPlan:
    def test_pending_files_of_an_empty_database(self, db_url: str, source: Path) -> None:
        plan = render(db_url, source).to_dict()
        assert plan["available"] is True
        assert plan["classification"] == "Additive"
        assert (plan["direction"], plan["to"]) == ("Upgrade", "3")
        assert "from" not in plan
        assert plan["migrations"] == SHOP_FILES
        assert plan["statements"] == 8
        assert plan["summary"]["CREATE TABLE"] == 3
        assert (plan["destructive"], plan["findingsOmitted"]) == ([], 0)
        assert len(plan["hash"]) == 16
        assert tables(db_url) == set()  # not even the history table

    def test_only_what_is_not_applied_yet(self, db_url: str, source: Path) -> None:
        migrate(db_url, source, target="2")
        plan = render(db_url, source).to_dict()
        assert (plan["from"], plan["to"], plan["migrations"]) == ("2", "3", [SHOP_FILES[2]])

    def test_drop_column_is_destructive_and_points_at_its_line(
        self, db_url: str, source: Path
    ) -> None:
        migrate(db_url, source)
        (source / "V4__drop_email.sql").write_text(DROP_EMAIL)
        plan = render(db_url, source).to_dict()
        assert plan["classification"] == "Destructive"
        assert plan["migrations"] == ["V4__drop_email.sql"]
        assert plan["destructive"] == [
            "V4__drop_email.sql:3: ALTER TABLE customers DROP COLUMN email"
        ]
        finding = plan["findings"][0]
        assert (finding["file"], finding["line"], finding["severity"]) == (
            "V4__drop_email.sql",
            3,
            "destructive",
        )
        # Planning applied nothing.
        assert applied_revision(db_url) == "3"
        assert "email" in column_names(db_url, "customers")

    def test_create_table_is_additive(self, db_url: str, source: Path) -> None:
        migrate(db_url, source)
        (source / "V4__coupons.sql").write_text(ADD_COUPONS)
        plan = render(db_url, source).to_dict()
        assert (plan["classification"], plan["destructive"]) == ("Additive", [])
        assert "coupons" not in tables(db_url)

    def test_a_downgrade_renders_the_undo_files(self, db_url: str, source: Path) -> None:
        migrate(db_url, source)
        plan = render(db_url, source, target="1", allow_downgrade=True).to_dict()
        assert (plan["direction"], plan["from"], plan["to"]) == ("Downgrade", "3", "1")
        assert plan["migrations"] == ["U3__add_customer_email.sql", "U2__create_orders.sql"]
        assert plan["classification"] == "Destructive"
        assert "U2__create_orders.sql:1: DROP TABLE orders" in plan["destructive"]
        assert applied_revision(db_url) == "3"

    def test_a_forbidden_downgrade_is_refused_as_the_run_would(
        self, sqlite_url: str, source: Path
    ) -> None:
        migrate(sqlite_url, source)
        with pytest.raises(errors.DowngradeForbidden):
            render(sqlite_url, source, target="1")

    def test_nothing_to_do(self, db_url: str, source: Path) -> None:
        migrate(db_url, source)
        plan = render(db_url, source).to_dict()
        assert (plan["direction"], plan["from"], plan["to"]) == ("None", "3", "3")
        assert (plan["migrations"], plan["statements"], plan["classification"]) == (
            [],
            0,
            "Additive",
        )


# --------------------------------------------------------------------------- tool alembic


class TestAlembicPlan:
    def test_offline_sql_one_file_per_revision(self, db_url: str, scripts: Path) -> None:
        plan = render(db_url, scripts, tool="alembic").to_dict()
        assert (plan["available"], plan["classification"]) == (True, "Additive")
        assert (plan["direction"], plan["to"]) == ("Upgrade", "a1000003")
        assert plan["migrations"] == SHOP_SCRIPTS
        assert plan["summary"]["CREATE TABLE"] >= 2
        assert plan["summary"]["ALTER TABLE"] == 1
        assert tables(db_url) == set()

    def test_from_the_applied_revision(self, db_url: str, scripts: Path) -> None:
        migrate(db_url, scripts, tool="alembic", target="a1000001")
        plan = render(db_url, scripts, tool="alembic").to_dict()
        assert (plan["from"], plan["migrations"]) == ("a1000001", SHOP_SCRIPTS[1:])
        assert applied_revision(db_url, "alembic") == "a1000001"
        assert "orders" not in tables(db_url)

    @pytest.mark.parametrize("server", ["pg_url", "mariadb_url"])
    def test_offline_downgrade_is_destructive(
        self, server: str, scripts: Path, request: pytest.FixtureRequest
    ) -> None:
        url: str = request.getfixturevalue(server)
        migrate(url, scripts, tool="alembic")
        plan = render(url, scripts, tool="alembic", target="a1000002", allow_downgrade=True)
        payload = plan.to_dict()
        assert (payload["direction"], payload["migrations"]) == ("Downgrade", [SHOP_SCRIPTS[2]])
        assert payload["classification"] == "Destructive"
        assert payload["findings"][0]["rule"] == "drop-column"
        assert "email" in column_names(url, "customers")

    def test_batch_mode_on_sqlite_cannot_render_offline(
        self, sqlite_url: str, scripts: Path
    ) -> None:
        migrate(sqlite_url, scripts, tool="alembic")
        plan = render(sqlite_url, scripts, tool="alembic", target="a1000002", allow_downgrade=True)
        payload = plan.to_dict()
        assert (payload["available"], payload["classification"]) == (False, "Unknown")
        assert "requires a live database connection" in payload["unavailableReason"]
        assert payload["migrations"] == [SHOP_SCRIPTS[2]]
        assert (payload["statements"], payload["findings"]) == (0, [])
        assert len(payload["hash"]) == 16

    def test_env_py_without_offline_mode(self, sqlite_url: str, scripts: Path) -> None:
        (scripts / "env.py").write_text(ONLINE_ONLY_ENV)
        payload = render(sqlite_url, scripts, tool="alembic").to_dict()
        assert payload["available"] is False
        assert payload["unavailableReason"].startswith(
            "the Alembic scripts cannot render SQL offline: KeyError"
        )
        assert payload["migrations"] == SHOP_SCRIPTS
        assert tables(sqlite_url) == set()


# --------------------------------------------------------------------------- the hash


class TestHash:
    def test_stable_for_the_same_inputs(self, db_url: str, source: Path) -> None:
        assert render(db_url, source).hash == render(db_url, source).hash

    def test_changes_with_salt_target_and_content(self, sqlite_url: str, source: Path) -> None:
        first = render(sqlite_url, source).hash
        assert render(sqlite_url, source, salt="spec-2").hash != first
        assert render(sqlite_url, source, target="2").hash != first
        v3 = source / "V3__add_customer_email.sql"
        v3.write_text(v3.read_text() + "-- a comment changes the plan too\n")
        assert render(sqlite_url, source).hash != first

    def test_changes_with_the_database_state(self, sqlite_url: str, source: Path) -> None:
        before = render(sqlite_url, source, target="3").hash
        migrate(sqlite_url, source, target="1")
        assert render(sqlite_url, source, target="3").hash != before

    def test_unavailable_plans_hash_the_scripts(self, sqlite_url: str, scripts: Path) -> None:
        (scripts / "env.py").write_text(ONLINE_ONLY_ENV)
        first = render(sqlite_url, scripts, tool="alembic")
        assert render(sqlite_url, scripts, tool="alembic").hash == first.hash
        revision = scripts / "versions" / SHOP_SCRIPTS[2]
        revision.write_text(revision.read_text().replace("320", "255"))
        assert render(sqlite_url, scripts, tool="alembic").hash != first.hash


# --------------------------------------------------------------------------- compact form


def big_plan(findings: int, migrations: int = 3) -> Plan:
    files = [f"V{n}__drop_things_that_nobody_needs_any_more.sql" for n in range(1, migrations + 1)]
    found = tuple(
        classify.Finding(
            rule="drop-table",
            severity="destructive",
            message="Drops table t and every row in it; code still using it fails. " * 2,
            file=files[n % len(files)],
            line=n + 1,
            statement=f"DROP TABLE a_table_with_a_rather_long_name_number_{n} CASCADE",
        )
        for n in range(findings)
    )
    report = classify.Report(statements=findings, summary={"DROP TABLE": findings}, findings=found)
    return Plan("0123456789abcdef", "up", "1", "99", tuple(files), report)


class TestCompact:
    def test_small_plans_are_whole(self) -> None:
        plan = big_plan(2)
        assert plan.compact(termination.PLAN_BUDGET) == plan.to_dict()

    @pytest.mark.parametrize("limit", [600, 1800, 3800])
    def test_findings_go_first_and_are_counted(self, limit: int) -> None:
        plan = big_plan(200)
        compact = plan.compact(limit)
        text = json.dumps(compact, separators=(",", ":"))
        assert len(text.encode()) <= limit
        assert compact["hash"] == plan.hash
        assert compact["classification"] == "Destructive"
        assert compact["findingsOmitted"] == 200 - len(compact["findings"])
        assert compact["statements"] == 200

    def test_migrations_and_destructive_lines_go_next(self) -> None:
        plan = big_plan(300, migrations=300)
        compact = plan.compact(1800)
        assert compact["findings"] == []
        assert compact["migrationsOmitted"] == 300 - len(compact["migrations"])
        assert compact["destructiveOmitted"] == 300 - len(compact["destructive"])
        assert len(json.dumps(compact, separators=(",", ":")).encode()) <= 1800


# --------------------------------------------------------------------------- lockstep plan


class TestPlanCommand:
    def test_prints_the_plan_and_writes_the_compact_one(
        self, db_url: str, source: Path, tmp_path: Path
    ) -> None:
        migrate(db_url, source)
        (source / "V4__drop_email.sql").write_text(DROP_EMAIL)
        result_file = tmp_path / "termination-log"
        completed = lockstep_cli(
            db_url,
            *("plan", "--tool", "sql", "--source", str(source), "--salt", "spec-1"),
            *("--result-file", str(result_file)),
        )
        assert completed.returncode == 0, completed.stderr
        printed = json.loads(completed.stdout)
        assert printed == render(db_url, source).to_dict()
        assert printed["classification"] == "Destructive"
        written = result_file.read_text()
        assert len(written.encode()) <= termination.PLAN_BUDGET
        assert json.loads(written)["hash"] == printed["hash"]
        assert_no_password(db_url, completed)
        assert applied_revision(db_url) == "3"
        assert "email" in column_names(db_url, "customers")

    def test_a_bad_source_is_one_line_and_a_failure(self, pg_url: str, tmp_path: Path) -> None:
        result_file = tmp_path / "termination-log"
        completed = lockstep_cli(
            pg_url,
            *("plan", "--tool", "sql", "--source", str(tmp_path / "missing"), "--salt", "s"),
            *("--result-file", str(result_file)),
        )
        assert completed.returncode == 1
        assert completed.stdout == ""
        error_lines = [line for line in completed.stderr.splitlines() if line.startswith("error")]
        assert error_lines == [
            f"error (InvalidSource): migration source {tmp_path / 'missing'} does not exist "
            "or is not a directory"
        ]
        written = json.loads(result_file.read_text())
        assert (written["result"], written["reason"]) == ("Failed", "InvalidSource")
        assert_no_password(pg_url, completed)

    def test_an_unreachable_database_never_shows_the_password(
        self, pg_url: str, source: Path, tmp_path: Path
    ) -> None:
        wrong = make_url(pg_url).set(password="not-the-password-42")
        url = wrong.render_as_string(hide_password=False)
        completed = lockstep_cli(
            url,
            *("plan", "--tool", "sql", "--source", str(source), "--salt", "s"),
            *("--result-file", str(tmp_path / "termination-log")),
        )
        assert completed.returncode == 1
        assert "error (DatabaseUnavailable)" in completed.stderr
        assert "not-the-password-42" not in completed.stderr + completed.stdout
        assert "not-the-password-42" not in (tmp_path / "termination-log").read_text()

    def test_without_database_url(self, source: Path, tmp_path: Path) -> None:
        completed = lockstep_cli(
            None,
            *("plan", "--tool", "sql", "--source", str(source), "--salt", "s"),
            *("--result-file", str(tmp_path / "termination-log")),
        )
        assert completed.returncode == 2
        assert "DATABASE_URL is not set" in completed.stderr


# --------------------------------------------------------------------------- run --expect-plan


class TestRunWithPlan:
    def test_a_stale_hash_refuses_before_anything_runs(self, db_url: str, source: Path) -> None:
        migrate(db_url, source, target="2")
        approved = render(db_url, source, target="2").hash  # approved before V2 ran elsewhere
        fresh = render(db_url, source)
        with pytest.raises(run_plan.PlanChanged) as caught:
            runner.run(request_for(db_url, source), [run_plan.plan_check("spec-1", approved)])
        assert caught.value.reason == "PlanChanged"
        assert str(caught.value).startswith(
            f"the plan changed since it was approved: approved {approved}, now {fresh.hash}; "
            "approve the new plan"
        )
        assert applied_revision(db_url) == "2"
        assert "email" not in column_names(db_url, "customers")

    def test_the_approved_plan_runs_and_is_in_the_result(self, db_url: str, source: Path) -> None:
        approved = render(db_url, source).hash
        result = runner.run(request_for(db_url, source), [run_plan.plan_check("spec-1", approved)])
        assert result.applied == ["1", "2", "3"]
        payload = json.loads(result.to_json())
        assert payload["plan"]["hash"] == approved
        assert payload["plan"]["migrations"] == SHOP_FILES
        assert len(result.to_json().encode()) <= termination.RESULT_BUDGET

    def test_nothing_to_do_is_never_refused(self, sqlite_url: str, source: Path) -> None:
        stale = render(sqlite_url, source).hash
        migrate(sqlite_url, source)
        result = runner.run(request_for(sqlite_url, source), [run_plan.plan_check("spec-1", stale)])
        assert (result.direction, result.applied) == ("none", [])

    def test_cli_refuses_with_its_own_exit_code_and_reason(
        self, db_url: str, source: Path, tmp_path: Path
    ) -> None:
        result_file = tmp_path / "termination-log"
        completed = lockstep_cli(
            db_url,
            *("run", "--tool", "sql", "--source", str(source), "--plan-salt", "spec-1"),
            *("--expect-plan", "0000000000000000", "--result-file", str(result_file)),
        )
        assert completed.returncode == 4, completed.stderr
        assert "error (PlanChanged): the plan changed since it was approved" in completed.stderr
        written = result_file.read_text()
        assert len(written.encode()) <= 4000
        report = json.loads(written)
        assert (report["result"], report["reason"]) == ("Failed", "PlanChanged")
        assert report["plan"]["hash"] == render(db_url, source).hash
        assert_no_password(db_url, completed)
        assert applied_revision(db_url) is None
        assert "customers" not in tables(db_url)

    def test_cli_runs_the_approved_plan(self, db_url: str, source: Path, tmp_path: Path) -> None:
        approved = render(db_url, source).hash
        result_file = tmp_path / "termination-log"
        completed = lockstep_cli(
            db_url,
            *("run", "--tool", "sql", "--source", str(source), "--plan-salt", "spec-1"),
            *("--expect-plan", approved, "--result-file", str(result_file)),
        )
        assert completed.returncode == 0, completed.stderr
        assert f"plan {approved}: Upgrade from base to 3" in completed.stderr
        report = json.loads(result_file.read_text())
        assert (report["result"], report["plan"]["hash"]) == ("Succeeded", approved)
        assert_no_password(db_url, completed)
        assert applied_revision(db_url) == "3"

    def test_expect_plan_needs_a_salt(self, sqlite_url: str, source: Path, tmp_path: Path) -> None:
        completed = lockstep_cli(
            sqlite_url,
            *("run", "--tool", "sql", "--source", str(source), "--expect-plan", "abc"),
            *("--result-file", str(tmp_path / "termination-log")),
        )
        assert completed.returncode == 1
        assert "--expect-plan needs --plan-salt" in completed.stderr
        assert tables(sqlite_url) == set()

    def test_the_result_stays_within_the_termination_message(
        self, sqlite_url: str, tmp_path: Path
    ) -> None:
        source = tmp_path / "many"
        source.mkdir()
        (source / "V1__ledger.sql").write_text("CREATE TABLE ledger (id INTEGER PRIMARY KEY);")
        migrate(sqlite_url, source)
        for version in range(2, 122):
            (source / f"V{version}__table_with_a_long_descriptive_name_{version}.sql").write_text(
                f"CREATE TABLE t{version} (id INTEGER PRIMARY KEY);\nDELETE FROM ledger;\n"
            )
        result_file = tmp_path / "termination-log"
        completed = lockstep_cli(
            sqlite_url,
            *("run", "--tool", "sql", "--source", str(source), "--plan-salt", "spec-1"),
            *("--result-file", str(result_file)),
        )
        assert completed.returncode == 0, completed.stderr
        written = result_file.read_text()
        assert len(written.encode()) <= 4000
        report = json.loads(written)
        assert report["appliedCount"] == 120
        assert len(json.dumps(report["plan"], separators=(",", ":")).encode()) <= 1800
        assert report["plan"]["findingsOmitted"] + len(report["plan"]["findings"]) >= 120
