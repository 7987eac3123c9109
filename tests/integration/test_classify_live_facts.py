"""The live facts read from real PostgreSQL and MariaDB, and the verdicts they lead to.

Each test builds a small table, reads the facts a plan asks about through
:mod:`lockstep.pod.live_facts` (and the whole `lockstep classify` path through
:func:`lockstep.pod.plan_model.plan_from_offline_sql`), and checks the classification.
The PostgreSQL premises (a widening re-reads the column's CHECKs; a validated
``CHECK (col IS NOT NULL)`` lets SET NOT NULL skip its scan) are observed with the table's
sequential-scan counter, so the rule rests on what the server does.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pymysql
import pytest
from sqlalchemy.engine import make_url

from lockstep import classify, database
from lockstep.classify import live
from lockstep.cli import pod_commands
from lockstep.pod import live_facts, live_schema, plan_model

pytestmark = pytest.mark.integration

PG_SETUP = """
CREATE TABLE orders (id bigint, email text, code text, nick varchar(20),
  CONSTRAINT orders_nick_len CHECK (length(nick) < 15),
  CONSTRAINT orders_id_present CHECK (id IS NOT NULL));
INSERT INTO orders SELECT n, 'user' || (n % 10) || '@example.com', 'c' || n, 'n' || n
  FROM generate_series(1, 12) AS n;
"""
MYSQL_SETUP = [
    "CREATE TABLE orders (id bigint, email varchar(100), code varchar(20), nick varchar(20))",
    "INSERT INTO orders VALUES (1, 'a@x', 'c1', 'n1'), (2, 'a@x', 'c2', 'n2'), (3, 'b@x', 'c3',"
    " 'n3'), (4, NULL, 'c4', 'n4'), (5, NULL, 'c5', 'n5')",
]


def classify_live(
    url: str, sql: str, engine: str, thresholds: live.Thresholds | None = None
) -> classify.Report:
    """Classify ``sql`` as the plan Job does: a first pass, the facts it asks for, again."""
    dialect = classify.dialect_for_engine(engine)
    files = [classify.SqlFile("V2__change.sql", sql)]
    first = classify.classify(files, dialect)
    sa_engine = database.make_engine(url)
    try:
        with sa_engine.connect() as connection:
            columns = live_schema.read(connection, engine)
            facts = live_facts.read(connection, engine, first.questions, columns, thresholds)
    finally:
        sa_engine.dispose()
    return classify.classify(files, dialect, schema=columns, facts=facts)


def only(report: classify.Report) -> classify.Finding:
    assert len(report.findings) == 1, report.findings
    return report.findings[0]


@pytest.fixture
def pg(pg_url: str) -> Iterator[str]:
    with psycopg.connect(pg_url, autocommit=True) as connection:
        connection.execute(PG_SETUP)
        connection.execute("ANALYZE orders")
    yield pg_url


def _seq_scans(connection: psycopg.Connection[tuple[object, ...]]) -> int:
    connection.execute("SELECT pg_stat_force_next_flush()")
    row = connection.execute(
        "SELECT seq_scan FROM pg_stat_user_tables WHERE relname = 'orders'"
    ).fetchone()
    assert row is not None
    return int(str(row[0]))


class TestPostgres:
    def test_facts_read_from_the_catalogs(self, pg: str) -> None:
        questions = classify.classify(
            [classify.SqlFile("V2__u.sql", "CREATE UNIQUE INDEX u ON orders (email)")],
            "postgresql",
        ).questions
        engine = database.make_engine(pg)
        try:
            with engine.connect() as connection:
                columns = live_schema.read(connection, "postgresql")
                facts = live_facts.read(connection, "postgresql", questions, columns)
        finally:
            engine.dispose()
        size = facts.sizes["orders"]
        assert size.rows == 12 and 0 < size.bytes < 1 << 20
        assert facts.not_null_checks == {("orders", "id")}
        assert facts.checks[("orders", "nick")] == ("orders_nick_len",)
        assert facts.duplicates == {("orders", ("email",)): True}

    def test_set_not_null_after_a_validated_check_neither_scans_nor_needs_approval(
        self, pg: str
    ) -> None:
        sql = "ALTER TABLE orders ALTER COLUMN id SET NOT NULL"
        assert classify_live(pg, sql, "postgresql").findings == ()
        with psycopg.connect(pg, autocommit=True) as connection:
            before = _seq_scans(connection)
            connection.execute(sql)
            assert _seq_scans(connection) == before

    def test_a_widening_rechecks_the_columns_check_with_a_scan(self, pg: str) -> None:
        sql = "ALTER TABLE orders ALTER COLUMN nick TYPE varchar(50)"
        large = live.Thresholds(rows=5, bytes=1 << 30)
        finding = only(classify_live(pg, sql, "postgresql", large))
        assert (finding.rule, finding.severity) == ("scan-under-lock", "breaking")
        assert "orders_nick_len" in finding.message and "~12 rows" in finding.message
        small = only(classify_live(pg, sql, "postgresql"))
        assert small.severity == "info" and "below the small-table threshold" in small.message
        with psycopg.connect(pg, autocommit=True) as connection:
            before = _seq_scans(connection)
            connection.execute(sql)
            assert _seq_scans(connection) == before + 1

    def test_a_rewrite_of_the_small_table_is_only_shown_with_its_size(self, pg: str) -> None:
        sql = "ALTER TABLE orders ADD COLUMN token uuid DEFAULT gen_random_uuid()"
        finding = only(classify_live(pg, sql, "postgresql"))
        assert finding.severity == "info"
        assert "orders (measured: ~12 rows, " in finding.message
        above = only(classify_live(pg, sql, "postgresql", live.Thresholds(rows=12)))
        assert above.severity == "breaking" and "orders holds ~12 rows" in above.message

    def test_a_drop_of_the_small_table_stays_destructive(self, pg: str) -> None:
        assert classify_live(pg, "ALTER TABLE orders DROP COLUMN code", "postgresql").destructive

    def test_duplicates_make_a_unique_index_fail_and_a_clean_key_passes_the_check(
        self, pg: str
    ) -> None:
        failing = only(
            classify_live(pg, "CREATE UNIQUE INDEX CONCURRENTLY u ON orders (email)", "postgresql")
        )
        assert failing.severity == "breaking"
        assert failing.message.startswith("Will fail: duplicates exist in orders (email)")
        sql = "ALTER TABLE orders ADD CONSTRAINT orders_code UNIQUE (code)"
        clean = only(classify_live(pg, sql, "postgresql"))
        assert "No duplicates in orders (code) when planned" in clean.message
        unchecked = only(classify_live(pg, sql, "postgresql", live.Thresholds(rows=5)))
        assert "Duplicates not checked: orders (~12 rows" in unchecked.message
        with psycopg.connect(pg, autocommit=True) as connection, pytest.raises(psycopg.Error):
            connection.execute("CREATE UNIQUE INDEX CONCURRENTLY u ON orders (email)")

    def test_lockstep_classify_reads_the_facts_through_its_url(self, pg: str) -> None:
        pending = plan_model.PendingWork("up", None, "2", revisions=())
        sql = "ALTER TABLE orders ADD COLUMN token uuid DEFAULT gen_random_uuid();\n"
        plan = plan_model.plan_from_offline_sql(
            sql, "postgresql", "salt", pending, pod_commands._live_schema_reader(pg)
        )
        without = plan_model.plan_from_offline_sql(sql, "postgresql", "salt", pending)
        assert plan.report is not None and without.report is not None
        assert plan.classification == "Additive" and without.classification == "Destructive"
        assert plan.hash == without.hash  # the hash is the SQL's, not the sizes'


@pytest.fixture
def maria(mariadb_url: str) -> str:
    parsed = make_url(mariadb_url)
    connection = pymysql.connect(
        host=parsed.host,
        port=parsed.port or 3306,
        user=parsed.username,
        password=parsed.password or "",
        database=parsed.database,
        autocommit=True,
    )
    with connection, connection.cursor() as cursor:
        for statement in MYSQL_SETUP:
            cursor.execute(statement)
    return mariadb_url


class TestMariadb:
    def test_facts_read_from_information_schema(self, maria: str) -> None:
        questions = classify.classify(
            [classify.SqlFile("V2__u.sql", "ALTER TABLE orders ADD UNIQUE KEY u (email)")],
            "mysql",
        ).questions
        engine = database.make_engine(maria)
        try:
            with engine.connect() as connection:
                columns = live_schema.read(connection, "mysql")
                facts = live_facts.read(connection, "mysql", questions, columns)
        finally:
            engine.dispose()
        assert facts.sizes["orders"].rows == 5
        assert facts.duplicates == {("orders", ("email",)): True}

    def test_a_table_copy_of_the_small_table_is_only_shown(self, maria: str) -> None:
        sql = "ALTER TABLE orders ADD COLUMN v int, ALGORITHM=COPY"
        report = classify_live(maria, sql, "mysql")
        assert report.findings and not report.destructive
        assert "orders (measured: ~5 rows, " in report.findings[0].message
        assert classify_live(maria, sql, "mysql", live.Thresholds(rows=5)).destructive

    def test_duplicates_and_nulls(self, maria: str) -> None:
        failing = only(classify_live(maria, "CREATE UNIQUE INDEX u ON orders (email)", "mysql"))
        assert failing.message.startswith("Will fail: duplicates exist in orders (email)")
        clean = only(classify_live(maria, "ALTER TABLE orders ADD UNIQUE KEY k (code)", "mysql"))
        assert "No duplicates in orders (code)" in clean.message
        assert clean.severity == "breaking"  # old code may still write duplicates

    def test_a_drop_of_the_small_table_stays_destructive(self, maria: str) -> None:
        assert classify_live(maria, "ALTER TABLE orders DROP COLUMN code", "mysql").destructive


def test_a_partitioned_table_has_no_size_so_its_verdict_stays_static(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as connection:
        connection.execute(
            "CREATE TABLE events (id int, day date) PARTITION BY RANGE (day);"
            " CREATE TABLE events_1 PARTITION OF events FOR VALUES FROM ('2024-01-01')"
            " TO ('2025-01-01'); INSERT INTO events VALUES (1, '2024-02-02')"
        )
    sql = "ALTER TABLE events ALTER COLUMN id TYPE bigint"
    finding = only(classify_live(pg_url, sql, "postgresql"))
    assert finding.severity == "breaking" and "measured" not in finding.message
