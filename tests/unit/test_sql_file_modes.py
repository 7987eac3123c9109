"""How a SQL migration file runs (one transaction, or statement by statement); what is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from lockstep import sql_file_modes, sqlfiles
from lockstep.errors import InvalidSource
from lockstep.sqlfiles import Dialect


def sql_file(
    text: str, name: str = "V4__change.sql", tmp: Path = Path("/nonexistent")
) -> sqlfiles.SqlFile:
    return sqlfiles.SqlFile(tmp / name, "V", "4", "change", "0" * 64, text)


def plan(
    text: str, dialect: Dialect = "postgresql", major: int | None = 16
) -> sql_file_modes.FilePlan:
    return sql_file_modes.plan_file(sql_file(text), dialect, major)


class TestWithoutTransaction:
    @pytest.mark.parametrize(
        "statement",
        [
            "CREATE INDEX CONCURRENTLY orders_customer ON orders (customer_id);",
            "create unique index concurrently if not exists o ON orders (id);",
            "DROP INDEX CONCURRENTLY IF EXISTS orders_customer;",
            "REINDEX INDEX CONCURRENTLY orders_customer;",
            "REINDEX (VERBOSE) TABLE CONCURRENTLY orders;",
            "ALTER TABLE events DETACH PARTITION events_2020 CONCURRENTLY;",
            "VACUUM ANALYZE orders;",
        ],
    )
    def test_a_file_of_only_such_statements_runs_without_a_transaction(
        self, statement: str
    ) -> None:
        found = plan(f"-- a comment\n{statement}\n{statement}")
        assert not found.transactional
        assert "cannot run in a transaction" in found.why

    def test_mixed_file_is_refused_naming_both_lines(self) -> None:
        with pytest.raises(InvalidSource) as caught:
            plan("CREATE TABLE t (id int);\n\nCREATE INDEX CONCURRENTLY t_id ON t (id);\n")
        message = str(caught.value)
        assert "V4__change.sql" in message
        assert "line 3 (CREATE INDEX CONCURRENTLY) cannot run inside a transaction" in message
        assert "line 1 (CREATE TABLE t (id int))" in message
        assert "-- lockstep:transaction=false" in message

    def test_mixed_file_with_the_header_runs_statement_by_statement(self) -> None:
        found = plan(
            "-- lockstep:transaction=false\nCREATE TABLE t (id int);\n"
            "CREATE INDEX CONCURRENTLY t_id ON t (id);\n"
        )
        assert not found.transactional
        assert [s.line for s in found.statements] == [2, 3]

    def test_header_true_with_concurrently_is_refused(self) -> None:
        with pytest.raises(InvalidSource, match="asks for one transaction"):
            plan("-- lockstep:transaction=true\nCREATE TABLE t (id int);\nVACUUM;\n")

    def test_header_after_the_first_statement_is_only_a_comment(self) -> None:
        with pytest.raises(InvalidSource, match="cannot run inside a transaction"):
            plan("CREATE TABLE t (id int);\n-- lockstep:transaction=false\nVACUUM;\n")

    def test_unknown_setting_is_refused(self) -> None:
        with pytest.raises(
            InvalidSource, match=r"line 1: unknown Lockstep setting 'transaction=maybe'"
        ):
            plan("-- lockstep:transaction=maybe\nSELECT 1;")

    def test_add_value_needs_no_transaction_on_old_servers_only(self) -> None:
        text = "ALTER TYPE mood ADD VALUE 'meh';"
        assert plan(text, major=16).transactional
        assert not plan(text, major=11).transactional

    def test_sqlite_vacuum(self) -> None:
        assert not plan("VACUUM;", "sqlite").transactional
        assert plan("CREATE TABLE t (id int);", "sqlite").transactional

    def test_concurrently_in_a_string_or_identifier_is_no_concurrent_statement(self) -> None:
        assert plan("INSERT INTO notes VALUES ('CREATE INDEX CONCURRENTLY x');").transactional


class TestTransactionControl:
    @pytest.mark.parametrize("dialect", ["postgresql", "sqlite"])
    def test_whole_file_wrapper_is_dropped(self, dialect: Dialect) -> None:
        found = plan(
            "BEGIN;\nCREATE TABLE t (id int);\nINSERT INTO t VALUES (1);\nCOMMIT;\n", dialect
        )
        assert found.transactional
        assert [s.line for s in found.statements] == [2, 3]

    @pytest.mark.parametrize(
        ("text", "named"),
        [
            (
                "BEGIN;\nCREATE TABLE t (id int);\nCOMMIT;\nCREATE TABLE u (id int);\n",
                "BEGIN at line 1, COMMIT at line 3",
            ),
            ("CREATE TABLE t (id int);\nROLLBACK;\n", "ROLLBACK at line 2"),
            (
                "START TRANSACTION;\nCREATE TABLE t (id int);\nROLLBACK;\n",
                "START TRANSACTION at line 1, ROLLBACK at line 3",
            ),
            ("CREATE TABLE t (id int);\nEND;\n", "END at line 2"),
        ],
    )
    @pytest.mark.parametrize("dialect", ["postgresql", "sqlite", "mysql"])
    def test_refused_with_file_and_line(self, text: str, named: str, dialect: Dialect) -> None:
        with pytest.raises(InvalidSource) as caught:
            plan(text, dialect)
        message = str(caught.value)
        assert message.startswith("V4__change.sql: transaction control")
        assert named in message
        assert "Nothing was run" in message

    def test_mysql_refuses_even_a_wrapper(self) -> None:
        with pytest.raises(InvalidSource, match="MySQL/MariaDB commit every DDL"):
            plan("START TRANSACTION;\nINSERT INTO t VALUES (1);\nCOMMIT;\n", "mysql")

    def test_savepoints_and_blocks_are_not_transaction_control(self) -> None:
        found = plan("SAVEPOINT a;\nINSERT INTO t VALUES (1);\nROLLBACK TO SAVEPOINT a;\n")
        assert len(found.statements) == 3
        block = "DELIMITER //\nBEGIN NOT ATOMIC SELECT 1; END//\nDELIMITER ;\n"
        assert len(plan(block, "mysql").statements) == 1

    def test_a_file_without_transaction_refuses_transaction_control(self) -> None:
        with pytest.raises(InvalidSource, match="COMMIT at line 3"):
            plan("-- lockstep:transaction=false\nBEGIN;\nCOMMIT;\nVACUUM;\n")


class TestPsqlOnly:
    def test_copy_from_stdin(self) -> None:
        with pytest.raises(InvalidSource) as caught:
            plan("CREATE TABLE t (id int);\nCOPY public.t (id) FROM stdin;\n1\n\\.\n")
        assert "line 2: COPY ... FROM stdin" in str(caught.value)
        assert "INSERT" in str(caught.value)

    def test_copy_from_a_file_is_sql(self) -> None:
        assert plan("COPY t FROM '/data/t.csv';").transactional

    def test_meta_command(self) -> None:
        with pytest.raises(InvalidSource, match=r"line 1: \\connect shop is a psql command"):
            plan("\\connect shop\nCREATE TABLE t (id int);")
