"""The classifier given a snapshot of the live database: sizes, validated CHECKs, duplicates.

Pure: the facts are built by hand, as :mod:`lockstep.pod.live_facts` reads them from the
catalogs (tests/integration/test_classify_live_facts.py reads them from real databases).
"""

from __future__ import annotations

import pytest

from lockstep.classify import Dialect, Finding, Report, SqlFile, classify, live
from lockstep.classify.coltypes import ColumnType
from lockstep.classify.plan import Column
from lockstep.pod import live_facts

SMALL = live.TableSize(rows=12, bytes=16 * 1024)
LARGE = live.TableSize(rows=2_000_000, bytes=400 * 1024 * 1024)
ORDERS = {
    "orders": {
        "id": Column(ColumnType("bigint"), nullable=True),
        "email": Column(ColumnType("varchar", (100,))),
        "nick": Column(ColumnType("varchar", (20,))),
        "code": Column(ColumnType("varchar", (8,))),
    }
}


def report(sql: str, dialect: Dialect = "postgresql", **facts: object) -> Report:
    snapshot = live.LiveFacts(**facts)  # type: ignore[arg-type]
    return classify([SqlFile("V1__change.sql", sql)], dialect, schema=ORDERS, facts=snapshot)


def only(sql: str, dialect: Dialect = "postgresql", **facts: object) -> Finding:
    findings = report(sql, dialect, **facts).findings
    assert len(findings) == 1, findings
    return findings[0]


class TestValidatedNotNullCheck:
    def test_set_not_null_after_a_validated_check_in_the_database_needs_no_approval(self) -> None:
        sql = "ALTER TABLE orders ALTER COLUMN id SET NOT NULL"
        assert report(sql, not_null_checks=frozenset({("orders", "id")})).findings == ()

    def test_without_the_check_set_not_null_still_scans(self) -> None:
        finding = only("ALTER TABLE orders ALTER COLUMN id SET NOT NULL")
        assert (finding.rule, finding.severity) == ("add-not-null-without-default", "breaking")

    def test_a_check_on_another_column_proves_nothing(self) -> None:
        sql = "ALTER TABLE orders ALTER COLUMN id SET NOT NULL"
        facts = frozenset({("orders", "email")})
        assert report(sql, not_null_checks=facts).destructive


NICK_CHECKS = {("orders", "nick"): ("orders_nick_check",)}


class TestWideningRechecksChecks:
    @pytest.mark.parametrize(
        "sql",
        [
            "ALTER TABLE orders ALTER COLUMN nick TYPE varchar(50)",
            "ALTER TABLE orders ALTER COLUMN nick TYPE text",
        ],
    )
    def test_a_widening_with_a_check_on_the_column_scans(self, sql: str) -> None:
        finding = only(sql, checks=NICK_CHECKS, sizes={"orders": LARGE})
        assert (finding.rule, finding.severity) == ("scan-under-lock", "breaking")
        assert "orders_nick_check" in finding.message
        assert "~2,000,000 rows, 400 MB" in finding.message

    def test_a_widening_without_checks_stays_quiet(self) -> None:
        sql = "ALTER TABLE orders ALTER COLUMN nick TYPE varchar(50)"
        assert report(sql, checks={("orders", "email"): ("email_check",)}).findings == ()

    def test_the_recheck_of_a_small_table_is_only_shown(self) -> None:
        sql = "ALTER TABLE orders ALTER COLUMN nick TYPE varchar(50)"
        finding = only(sql, checks=NICK_CHECKS, sizes={"orders": SMALL})
        assert finding.severity == "info"


class TestTableSize:
    REWRITE = "ALTER TABLE orders ADD COLUMN token uuid DEFAULT gen_random_uuid()"

    def test_a_rewrite_of_a_small_table_needs_no_approval_and_says_the_size(self) -> None:
        finding = only(self.REWRITE, sizes={"orders": SMALL})
        assert finding.severity == "info"
        assert "orders (measured: ~12 rows, 16 kB) is below the small-table threshold" in (
            finding.message
        )
        assert "10,000 rows and 10 MB" in finding.message

    def test_a_rewrite_of_a_large_table_needs_approval_and_says_the_size(self) -> None:
        finding = only(self.REWRITE, sizes={"orders": LARGE})
        assert finding.severity == "breaking"
        assert "orders holds ~2,000,000 rows, 400 MB" in finding.message

    def test_rows_or_bytes_at_the_threshold_are_not_small(self) -> None:
        at_rows = live.TableSize(10_000, 1024)
        at_bytes = live.TableSize(10, live.DEFAULT_MAX_BYTES)
        assert only(self.REWRITE, sizes={"orders": at_rows}).severity == "breaking"
        assert only(self.REWRITE, sizes={"orders": at_bytes}).severity == "breaking"

    def test_the_threshold_is_configurable(self) -> None:
        limits = live.Thresholds(rows=5, bytes=1 << 30)
        assert only(self.REWRITE, sizes={"orders": SMALL}, thresholds=limits).severity == (
            "breaking"
        )

    def test_an_index_built_under_lock_on_a_small_table_is_only_shown(self) -> None:
        finding = only("CREATE INDEX orders_email ON orders (email)", sizes={"orders": SMALL})
        assert (finding.rule, finding.severity) == ("create-index-locks-writes", "info")

    @pytest.mark.parametrize(
        "sql",
        [
            "ALTER TABLE orders DROP COLUMN code",
            "DROP TABLE orders",
            "TRUNCATE orders",
            "DELETE FROM orders",
            "ALTER TABLE orders ALTER COLUMN email TYPE varchar(10)",  # can fail on data
            "ALTER TABLE orders ALTER COLUMN id SET NOT NULL",  # can fail on a NULL row
        ],
    )
    def test_data_loss_and_failures_need_approval_whatever_the_size(self, sql: str) -> None:
        assert report(sql, sizes={"orders": SMALL}).destructive

    def test_mysql_table_copy_of_a_small_table_is_only_shown(self) -> None:
        sql = "ALTER TABLE orders ADD COLUMN v int, ALGORITHM=COPY"
        findings = report(sql, "mysql", sizes={"orders": SMALL}).findings
        assert findings and all(finding.severity == "info" for finding in findings)
        assert report(sql, "mysql", sizes={"orders": LARGE}).destructive

    def test_unknown_size_keeps_the_static_verdict(self) -> None:
        assert only(self.REWRITE).severity == "breaking"


class TestDuplicates:
    def test_a_unique_index_over_duplicates_will_fail(self) -> None:
        sql = "CREATE UNIQUE INDEX CONCURRENTLY orders_email ON orders (email)"
        finding = only(sql, sizes={"orders": SMALL}, duplicates={("orders", ("email",)): True})
        assert finding.severity == "breaking"
        assert finding.message.startswith("Will fail: duplicates exist in orders (email)")

    def test_no_duplicates_found_is_said(self) -> None:
        sql = "ALTER TABLE orders ADD CONSTRAINT orders_code UNIQUE (code)"
        finding = only(sql, sizes={"orders": SMALL}, duplicates={("orders", ("code",)): False})
        assert "No duplicates in orders (code) when planned" in finding.message

    def test_a_large_table_is_not_checked_and_says_so(self) -> None:
        sql = "ALTER TABLE orders ADD CONSTRAINT orders_code UNIQUE (code)"
        finding = only(sql, sizes={"orders": LARGE})
        assert "Duplicates not checked: orders (~2,000,000 rows, 400 MB)" in finding.message

    @pytest.mark.parametrize(
        ("sql", "dialect", "key"),
        [
            ("CREATE UNIQUE INDEX u ON orders (email, code)", "postgresql", ("email", "code")),
            ("ALTER TABLE orders ADD PRIMARY KEY (id)", "postgresql", ("id",)),
            ("ALTER TABLE orders ADD UNIQUE KEY u (Email, code)", "mysql", ("email", "code")),
            ("CREATE UNIQUE INDEX u ON orders (email)", "mysql", ("email",)),
            ("ALTER TABLE orders ADD CONSTRAINT u UNIQUE (code)", "mysql", ("code",)),
        ],
    )
    def test_the_plan_asks_about_plain_unique_keys(
        self, sql: str, dialect: Dialect, key: tuple[str, ...]
    ) -> None:
        questions = classify([SqlFile("V1__u.sql", sql)], dialect).questions
        assert questions.unique_keys == {("orders", key)}

    @pytest.mark.parametrize(
        ("sql", "dialect"),
        [
            ("CREATE UNIQUE INDEX u ON orders (lower(email))", "postgresql"),
            ("CREATE UNIQUE INDEX u ON orders (email) WHERE code IS NULL", "postgresql"),
            ("ALTER TABLE orders ADD CONSTRAINT u UNIQUE NULLS NOT DISTINCT (code)", "postgresql"),
            ("CREATE UNIQUE INDEX u ON orders (email(10))", "mysql"),
        ],
    )
    def test_expression_partial_and_prefix_keys_are_not_asked(
        self, sql: str, dialect: Dialect
    ) -> None:
        assert classify([SqlFile("V1__u.sql", sql)], dialect).questions.unique_keys == set()


def test_questions_name_only_the_existing_tables_findings_are_about() -> None:
    sql = (
        "CREATE TABLE fresh (id int); CREATE INDEX f ON fresh (id);"
        " CREATE INDEX o ON orders (email); ALTER TABLE customers DROP COLUMN x"
    )
    questions = classify([SqlFile("V1__q.sql", sql)], "postgresql").questions
    assert questions.tables == {"orders"}


def test_thresholds_from_the_environment() -> None:
    limits = live_facts.thresholds_from_env(
        {live_facts.ROWS_ENV: "500", live_facts.BYTES_ENV: "1048576"}
    )
    assert limits == live.Thresholds(rows=500, bytes=1 << 20)
    assert live_facts.thresholds_from_env({live_facts.ROWS_ENV: "lots"}) == live.Thresholds()


def test_a_concurrent_unique_index_without_facts_is_only_shown() -> None:
    sql = "CREATE UNIQUE INDEX CONCURRENTLY orders_email ON orders (email)"
    report = classify([SqlFile("V1__u.sql", sql)], "postgresql")
    assert [finding.severity for finding in report.findings] == ["info"]
    assert not report.destructive


@pytest.mark.parametrize(
    "sql",
    [
        "ALTER TABLE orders ALTER COLUMN nick TYPE text",
        "ALTER TABLE orders ALTER COLUMN id SET NOT NULL",
    ],
)
def test_statements_that_a_check_changes_ask_about_their_table(sql: str) -> None:
    declared = f"CREATE TABLE IF NOT EXISTS orders (id int, nick varchar(20)); {sql}"
    questions = classify([SqlFile("V1__q.sql", declared)], "postgresql").questions
    assert questions.tables == {"orders"}
