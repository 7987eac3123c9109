"""Existing databases on real PostgreSQL, MariaDB and SQLite: one history per DatabaseMigration,
a configurable version table, and spec.baseline, through the built-in runner."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from dbtest import execute, family, tables
from dbtest import run_sql as run
from lockstep import database, errors, version_tables
from lockstep.pod import run_plan, runner
from lockstep.pod.run_request import RunRequest
from lockstep.tools.version_table import VersionTableRef, sql_history_name

pytestmark = pytest.mark.integration

SHARED = "lockstep_schema_history"
ORDERS, BILLING = "shop/orders", "shop/billing"


@pytest.fixture
def source(fixtures_dir: Path, tmp_path: Path) -> Path:
    """The shop migrations (V1-V3 with U files)."""
    return Path(shutil.copytree(fixtures_dir / "sql" / "shop", tmp_path / "orders"))


@pytest.fixture
def other_source(tmp_path: Path) -> Path:
    """A second service's files: also starting at V1, with other contents."""
    directory = tmp_path / "billing"
    directory.mkdir()
    (directory / "V1__invoices.sql").write_text("CREATE TABLE invoices (id INTEGER PRIMARY KEY);\n")
    (directory / "V2__invoice_total.sql").write_text(
        "ALTER TABLE invoices ADD COLUMN total INTEGER;\n"
    )
    return directory


def rows(url: str, query: str) -> list[tuple[Any, ...]]:
    engine = database.make_engine(url)
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(sa.text(query))]
    finally:
        engine.dispose()


def versions(url: str, table: str) -> list[str]:
    return sorted(str(v) for (v,) in rows(url, f"SELECT version FROM {table}"))


def runs_per_version(url: str) -> dict[str, int]:
    return dict(Counter(str(v) for (v,) in rows(url, "SELECT version FROM migration_log")))


def as_owner(owner: str, **options: Any) -> dict[str, Any]:
    """The options the operator passes for the DatabaseMigration ``owner`` (tool sql)."""
    return {"owner": owner, "version_table": sql_history_name(owner), **options}


class TestTwoResourcesOnOneDatabase:
    def test_each_keeps_its_own_history(
        self, db_url: str, source: Path, other_source: Path
    ) -> None:
        orders = run(db_url, source, **as_owner(ORDERS))
        billing = run(db_url, other_source, **as_owner(BILLING))
        assert (orders.applied, billing.applied) == (["1", "2", "3"], ["1", "2"])
        assert versions(db_url, sql_history_name(ORDERS)) == ["1", "2", "3"]
        assert versions(db_url, sql_history_name(BILLING)) == ["1", "2"]
        assert SHARED not in tables(db_url)
        # Both again, in the other order: each is up to date, nobody's checksum is compared
        # with the other's files.
        assert run(db_url, other_source, **as_owner(BILLING)).applied == []
        assert run(db_url, source, **as_owner(ORDERS)).applied == []
        ref = VersionTableRef(sql_history_name(BILLING))
        assert version_tables.read_revision("sql", db_url, ref) == "2"

    def test_one_table_named_twice_refuses_the_second_by_name(
        self, db_url: str, source: Path, other_source: Path
    ) -> None:
        run(db_url, source, owner=ORDERS, version_table="shop_history")
        with pytest.raises(errors.VersionTableInUse) as refused:
            run(db_url, other_source, owner=BILLING, version_table="shop_history")
        message = str(refused.value)
        assert f"the migrations of {ORDERS} are recorded in" in message
        assert "spec.versionTable.name" in message
        assert "invoices" not in tables(db_url)  # nothing of the second ran
        assert versions(db_url, "shop_history") == ["1", "2", "3"]
        # The first keeps working.
        assert run(db_url, source, owner=ORDERS, version_table="shop_history").applied == []

    def test_the_plan_refuses_the_second_as_the_run_would(
        self, db_url: str, source: Path, other_source: Path
    ) -> None:
        run(db_url, source, owner=ORDERS, version_table="shop_history")
        request = RunRequest(
            "sql", other_source, db_url, owner=BILLING, version_table="shop_history"
        )
        with pytest.raises(errors.VersionTableInUse):
            run_plan.render_plan(request, salt="s")


class TestSharedHistoryOfAnOlderLockstep:
    def test_taken_over_by_its_resource_and_nothing_runs_again(
        self, db_url: str, source: Path, other_source: Path
    ) -> None:
        run(db_url, source, target="2")  # an older Lockstep: no owner, the shared table
        assert versions(db_url, SHARED) == ["1", "2"]
        result = run(db_url, source, **as_owner(ORDERS))
        assert (result.from_revision, result.applied) == ("2", ["3"])
        assert runs_per_version(db_url) == {"1": 1, "2": 1, "3": 1}
        assert SHARED not in tables(db_url)
        assert versions(db_url, sql_history_name(ORDERS)) == ["1", "2", "3"]
        # The second service, which used to fail with ChecksumMismatch on V1, now runs.
        assert run(db_url, other_source, **as_owner(BILLING)).applied == ["1", "2"]

    def test_the_shared_name_is_free_again_after_the_take_over(
        self, db_url: str, source: Path, other_source: Path
    ) -> None:
        run(db_url, source)
        run(db_url, source, **as_owner(ORDERS))
        # A hand-run `lockstep run` (no owner) creates a new shared table, constraints and all.
        assert run(db_url, other_source).applied == ["1", "2"]
        assert versions(db_url, SHARED) == ["1", "2"]
        assert versions(db_url, sql_history_name(ORDERS)) == ["1", "2", "3"]

    def test_not_taken_over_by_another_resource(
        self, db_url: str, source: Path, other_source: Path
    ) -> None:
        run(db_url, source)
        assert run(db_url, other_source, **as_owner(BILLING)).applied == ["1", "2"]
        assert versions(db_url, SHARED) == ["1", "2", "3"]  # left for its own resource
        assert run(db_url, source, **as_owner(ORDERS)).applied == []
        assert SHARED not in tables(db_url)

    def test_the_drift_reader_reads_it_until_the_resource_runs(
        self, db_url: str, source: Path
    ) -> None:
        run(db_url, source)
        own = VersionTableRef(sql_history_name(ORDERS))
        assert version_tables.read_revision("sql", db_url, own, SHARED) == "3"
        assert version_tables.read_revision("sql", db_url, own) is None


class TestVersionTableAndSchema:
    def test_a_named_table_in_another_schema(self, db_url: str, source: Path) -> None:
        if family(db_url) == "sqlite":
            pytest.skip("SQLite has no schemas to create (only attached files)")
        schema = "audit_" + database.identity_from_url(db_url).database[-8:]
        create = "CREATE SCHEMA" if family(db_url) == "postgresql" else "CREATE DATABASE"
        execute(db_url, f"{create} {schema}")
        try:
            result = run(db_url, source, version_table="migrations", version_table_schema=schema)
            assert result.applied == ["1", "2", "3"]
            assert versions(db_url, f"{schema}.migrations") == ["1", "2", "3"]
            assert "migrations" not in tables(db_url) and SHARED not in tables(db_url)
            ref = VersionTableRef("migrations", schema)
            assert version_tables.read_revision("sql", db_url, ref) == "3"
            again = run(db_url, source, version_table="migrations", version_table_schema=schema)
            assert again.applied == []
        finally:
            if family(db_url) == "mysql":
                execute(db_url, f"DROP DATABASE {schema}")

    def test_a_name_that_needs_quoting_is_quoted(self, db_url: str, source: Path) -> None:
        # Mixed case survives as written (quoted), on every engine.
        run(db_url, source, version_table="ShopHistory")
        assert version_tables.read_revision("sql", db_url, VersionTableRef("ShopHistory")) == "3"


def populate(url: str, source: Path, upto: int) -> None:
    """An existing schema made by hand (or another tool): the files' SQL, without Lockstep."""
    for path in sorted(source.glob("V*.sql"))[:upto]:
        statements = [s for s in path.read_text().split(";\n") if s.strip()]
        execute(url, *statements)


class TestBaseline:
    def test_adopts_a_populated_database(self, db_url: str, source: Path) -> None:
        populate(db_url, source, upto=2)
        result = run(db_url, source, **as_owner(ORDERS, baseline="2"))
        assert (result.baselined, result.applied) == (["1", "2"], ["3"])
        assert (result.from_revision, result.to_revision) == ("2", "3")
        assert "baselined 2 existing migration(s) up to 2 (recorded, not run)" in result.summary()
        assert runs_per_version(db_url) == {"1": 1, "2": 1, "3": 1}  # V1, V2 never ran again
        table = sql_history_name(ORDERS)
        recorded = rows(db_url, f"SELECT version, baselined, execution_ms FROM {table}")
        flags = {str(v): (bool(b), int(ms)) for v, b, ms in recorded}
        assert flags["1"] == (True, 0) and flags["2"] == (True, 0) and flags["3"][0] is False
        # The spec keeps its baseline: later runs neither refuse nor baseline again.
        assert run(db_url, source, **as_owner(ORDERS, baseline="2")).applied == []

    def test_the_plan_shows_only_the_files_that_run(self, db_url: str, source: Path) -> None:
        populate(db_url, source, upto=2)
        request = RunRequest("sql", source, db_url, **as_owner(ORDERS, baseline="2"))
        plan = run_plan.render_plan(request, salt="s")
        assert (plan.current, plan.target, plan.migrations) == (
            "2",
            "3",
            ("V3__add_customer_email.sql",),
        )
        assert sql_history_name(ORDERS) not in tables(db_url)  # the plan wrote nothing

    def test_refused_on_a_database_with_history(self, db_url: str, source: Path) -> None:
        run(db_url, source, target="1", **as_owner(ORDERS))
        with pytest.raises(errors.BaselineRefused, match=r"already records version\(s\) 1"):
            run(db_url, source, **as_owner(ORDERS, baseline="2"))
        assert versions(db_url, sql_history_name(ORDERS)) == ["1"]

    def test_refused_when_the_version_changes(self, db_url: str, source: Path) -> None:
        populate(db_url, source, upto=2)
        run(db_url, source, target="2", **as_owner(ORDERS, baseline="2"))
        with pytest.raises(errors.BaselineRefused, match="baselined at version 2"):
            run(db_url, source, **as_owner(ORDERS, baseline="1"))

    def test_no_target_or_downgrade_below_it(self, db_url: str, source: Path) -> None:
        populate(db_url, source, upto=2)
        with pytest.raises(errors.InvalidTarget, match=r"lies below spec\.baseline\.version 2"):
            run(db_url, source, target="1", **as_owner(ORDERS, baseline="2"))
        run(db_url, source, **as_owner(ORDERS, baseline="2"))
        with pytest.raises(errors.InvalidTarget, match="below the baseline"):
            run(db_url, source, target="1", allow_downgrade=True, **as_owner(ORDERS, baseline="2"))
        assert "email" in {c["name"] for c in _columns(db_url, "customers")}

    def test_a_version_without_a_file_is_refused(self, db_url: str, source: Path) -> None:
        with pytest.raises(errors.InvalidSource, match="names no V7__"):
            run(db_url, source, **as_owner(ORDERS, baseline="7"))


def _columns(url: str, table: str) -> list[dict[str, Any]]:
    engine = database.make_engine(url)
    try:
        with engine.connect() as connection:
            return list(sa.inspect(connection).get_columns(table))
    finally:
        engine.dispose()


class TestAlembicVersionTable:
    @pytest.fixture
    def scripts(self, fixtures_dir: Path, tmp_path: Path) -> Path:
        return Path(shutil.copytree(fixtures_dir / "alembic" / "shop", tmp_path / "alembic"))

    def alembic(self, url: str, scripts: Path, **options: Any) -> Any:
        request = RunRequest("alembic", scripts, url, lock_wait_seconds=10.0, **options)
        return runner.run(request)

    def test_a_named_table(self, db_url: str, scripts: Path) -> None:
        result = self.alembic(db_url, scripts, owner=ORDERS, version_table="shop_alembic")
        assert result.to_revision == "a1000003"
        assert "shop_alembic" in tables(db_url) and "alembic_version" not in tables(db_url)
        ref = VersionTableRef("shop_alembic")
        assert version_tables.read_revision("alembic", db_url, ref) == "a1000003"

    def test_an_env_py_that_ignores_it_is_named(self, db_url: str, scripts: Path) -> None:
        env = scripts / "env.py"
        honoured = (
            '        version_table=config.attributes.get("version_table", "alembic_version"),\n'
            '        version_table_schema=config.attributes.get("version_table_schema"),\n'
        )
        assert honoured in env.read_text()
        env.write_text(env.read_text().replace(honoured, ""))  # a stock env.py
        with pytest.raises(errors.InvalidSource, match=r"does not use spec\.versionTable"):
            self.alembic(db_url, scripts, version_table="shop_alembic")

    def test_two_resources_on_the_default_table_refuse_the_second(
        self, db_url: str, scripts: Path
    ) -> None:
        self.alembic(db_url, scripts, owner=ORDERS)
        with pytest.raises(
            errors.VersionTableInUse, match=f"the migrations of {ORDERS} are recorded"
        ):
            self.alembic(db_url, scripts, owner=BILLING)


class TestClaimCommand:
    """`lockstep claim`, the init container of a tool in an image, as the pod runs it."""

    def claim(self, url: str, owner: str, tmp_path: Path, **extra: str) -> tuple[int, str]:
        result_file = tmp_path / f"result-{owner.replace('/', '-')}"
        argv = [
            str(Path(sys.executable).with_name("lockstep")), "claim", "--tool", "flyway",
            "--version-table", "flyway_schema_history", "--owner", owner,
            "--result-file", str(result_file),
        ]  # fmt: skip
        for flag, value in extra.items():
            argv += [f"--{flag.replace('_', '-')}", value]
        done = subprocess.run(
            argv,
            env={**os.environ, "DATABASE_URL": url},
            capture_output=True,
            text=True,
            timeout=60,
        )
        said = result_file.read_text() if result_file.exists() else ""
        return done.returncode, said + done.stderr

    def test_the_second_owner_of_a_tool_table_is_refused(self, db_url: str, tmp_path: Path) -> None:
        if family(db_url) == "sqlite":
            pytest.skip("tools in an image run against a server, not a SQLite file")
        # A fresh database: nothing is created before the tool's first run (Flyway and Prisma
        # refuse a first run on a non-empty schema).
        code, said = self.claim(db_url, ORDERS, tmp_path)
        assert code == 0, said
        assert "lockstep_version_table_owners" not in tables(db_url)
        # The tool ran (its table exists); the operator claims it after that run.
        execute(db_url, "CREATE TABLE flyway_schema_history (installed_rank INTEGER)")
        history = VersionTableRef("flyway_schema_history")
        assert version_tables.claim_after_run(db_url, ORDERS, "flyway", history) is None
        assert version_tables.claim_after_run(db_url, ORDERS, "flyway", history) == ORDERS
        assert self.claim(db_url, ORDERS, tmp_path)[0] == 0  # the owner again: fine
        code, said = self.claim(db_url, BILLING, tmp_path)
        assert code != 0
        assert "VersionTableInUse" in said and f"the migrations of {ORDERS}" in said
        assert "spec.versionTable.name" in said
        password = make_url(db_url).password
        assert password and password not in said
        # Another table of its own (spec.versionTable) is not in anybody's way (the last
        # --version-table wins, as argparse reads it).
        code, said = self.claim(db_url, BILLING, tmp_path, version_table="billing_flyway")
        assert code == 0, said
        # The same table named with its schema spelled out is still the same table.
        code, said = self.claim(db_url, BILLING, tmp_path, version_table_schema=_schema(db_url))
        assert code != 0 and f"the migrations of {ORDERS}" in said


def _schema(url: str) -> str:
    """The current schema of ``url`` (public, or the MySQL database), spelled out."""
    return "public" if family(url) == "postgresql" else database.identity_from_url(url).database
