"""Versioned SQL files: names, ordering, checksums, problems, statement splitting."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from lockstep import sqlfiles
from lockstep.errors import InvalidSource
from lockstep.sqlfiles import Statement, split_statements


def write(directory: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


class TestFileNames:
    @pytest.mark.parametrize(
        ("name", "expected"),
        [
            ("V1__init.sql", ("V", "1", "init")),
            ("U1__init.sql", ("U", "1", "init")),
            ("V001__create_customers.sql", ("V", "1", "create customers")),
            ("V1.1__fix__typo.sql", ("V", "1.1", "fix  typo")),
            ("V2.0__two.sql", ("V", "2", "two")),
        ],
    )
    def test_parses(self, name: str, expected: tuple[str, str, str]) -> None:
        assert sqlfiles.parse_file_name(name) == expected

    @pytest.mark.parametrize(
        "name",
        ["V1_init.sql", "v1__init.sql", "V__init.sql", "V1.__x.sql", "R__view.sql", "V1__.sql"],
    )
    def test_rejects(self, name: str) -> None:
        assert sqlfiles.parse_file_name(name) is None

    def test_versions_order_numerically(self) -> None:
        versions = ["10", "2", "1.10", "1.2", "1", "1.1"]
        ordered = sorted(versions, key=sqlfiles.version_key)
        assert ordered == ["1", "1.1", "1.2", "1.10", "2", "10"]

    def test_trailing_zero_parts_do_not_make_a_new_version(self) -> None:
        assert sqlfiles.version_key("1.0") == sqlfiles.version_key("1")
        assert sqlfiles.canonical_version("01.00") == "1"


class TestLoadDirectory:
    def test_pairs_and_orders(self, tmp_path: Path) -> None:
        write(
            tmp_path,
            {
                "V10__ten.sql": "SELECT 10;",
                "V2__two.sql": "SELECT 2;",
                "U2__two.sql": "SELECT -2;",
                "V1.5__one_and_a_half.sql": "SELECT 1.5;",
                "README.md": "ignored",
                ".hidden.sql": "ignored",
            },
        )
        loaded = sqlfiles.load_directory(tmp_path)
        assert loaded.versions == ["1.5", "2", "10"]
        two = loaded.find("02")
        assert two is not None
        assert two.down is not None
        assert two.down.name == "U2__two.sql"
        assert loaded.migrations[0].down is None
        assert loaded.migrations[0].description == "one and a half"

    def test_checksum_is_sha256_of_the_bytes(self, tmp_path: Path) -> None:
        content = b"-- \xc3\xa9t\xc3\xa9\r\nSELECT 1;\r\n"
        (tmp_path / "V1__x.sql").write_bytes(content)
        loaded = sqlfiles.load_directory(tmp_path)
        assert loaded.migrations[0].up.checksum == hashlib.sha256(content).hexdigest()

    def test_configmap_mount_layout(self, tmp_path: Path) -> None:
        # Kubernetes mounts ConfigMap keys as symlinks into a hidden, timestamped directory.
        data = tmp_path / "..2024_01_01_00_00_00.000"
        data.mkdir()
        (data / "V1__init.sql").write_text("SELECT 1;")
        (tmp_path / "..data").symlink_to(data.name)
        (tmp_path / "V1__init.sql").symlink_to(Path("..data") / "V1__init.sql")
        assert sqlfiles.load_directory(tmp_path).versions == ["1"]

    def test_reports_every_problem_with_file_names(self, tmp_path: Path) -> None:
        write(
            tmp_path,
            {
                "V1__a.sql": "",
                "V1.0__b.sql": "",
                "U3__c.sql": "",
                "V2-oops.sql": "",
                "V0__zero.sql": "",
            },
        )
        with pytest.raises(InvalidSource) as caught:
            sqlfiles.load_directory(tmp_path)
        message = str(caught.value)
        assert "4 problem(s)" in message
        assert "V1.0__b.sql and V1__a.sql both have version 1" in message
        assert "U3__c.sql undoes version 3, but there is no V3__*.sql file" in message
        assert "V2-oops.sql: bad migration file name; expected V<version>__" in message
        assert "V0__zero.sql: version 0 is reserved" in message
        assert caught.value.reason == "InvalidSource"

    def test_missing_directory(self, tmp_path: Path) -> None:
        with pytest.raises(InvalidSource, match="does not exist"):
            sqlfiles.load_directory(tmp_path / "nope")

    def test_not_utf8(self, tmp_path: Path) -> None:
        (tmp_path / "V1__latin1.sql").write_bytes(b"SELECT '\xe9';")
        with pytest.raises(InvalidSource, match=r"V1__latin1\.sql: not UTF-8"):
            sqlfiles.load_directory(tmp_path)

    def test_a_nul_character_is_refused_with_its_line(self, tmp_path: Path) -> None:
        (tmp_path / "V1__nul.sql").write_bytes(b"SELECT 1;\nSELECT '\x00';")
        with pytest.raises(InvalidSource, match=r"V1__nul\.sql: line 2 has a NUL character"):
            sqlfiles.load_directory(tmp_path)

    def test_utf16_text_is_refused_before_any_database_sees_it(self, tmp_path: Path) -> None:
        (tmp_path / "V1__utf16.sql").write_bytes("SELECT 1;".encode("utf-16-le"))
        with pytest.raises(InvalidSource, match=r"V1__utf16\.sql: line 1 has a NUL"):
            sqlfiles.load_directory(tmp_path)


def texts(statements: list[Statement]) -> list[str]:
    return [s.text for s in statements]


class TestSplitStatements:
    def test_semicolons_and_line_numbers(self) -> None:
        sql = "CREATE TABLE a (id INT);\n\n-- comment\nINSERT INTO a VALUES (1);\nSELECT 1"
        assert split_statements(sql) == [
            Statement("CREATE TABLE a (id INT)", 1),
            Statement("INSERT INTO a VALUES (1)", 4),
            Statement("SELECT 1", 5),
        ]

    def test_semicolons_in_quotes_and_comments_do_not_split(self) -> None:
        sql = (
            "INSERT INTO t VALUES ('a;b', 'it''s; fine'); -- trailing; comment\n"
            '/* block; comment */ SELECT "odd;name" FROM t;'
        )
        assert texts(split_statements(sql)) == [
            "INSERT INTO t VALUES ('a;b', 'it''s; fine')",
            'SELECT "odd;name" FROM t',
        ]

    def test_empty_statements_and_comment_only_text_are_dropped(self) -> None:
        assert split_statements(";;\n-- only a comment\n/* and another */\n;") == []

    def test_postgresql_dollar_quotes(self) -> None:
        sql = (
            "CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql;\n"
            "CREATE FUNCTION g() RETURNS int AS $body$\n"
            "BEGIN RETURN 1; END;\n"
            "$body$ LANGUAGE plpgsql;\n"
            "SELECT $1, a$b FROM t;"
        )
        statements = split_statements(sql, "postgresql")
        assert len(statements) == 3
        assert statements[1].text.endswith("$body$ LANGUAGE plpgsql")
        assert statements[1].line == 2
        assert statements[2] == Statement("SELECT $1, a$b FROM t", 5)

    def test_postgresql_nested_comments_and_escape_strings(self) -> None:
        sql = "/* outer /* inner; */ still; comment */ SELECT E'it\\'s;';\nSELECT 2;"
        assert texts(split_statements(sql, "postgresql")) == ["SELECT E'it\\'s;'", "SELECT 2"]

    def test_mysql_backslash_escapes_hash_comments_and_backticks(self) -> None:
        sql = "# note; here\nINSERT INTO `a;b` VALUES ('it\\'s;');\nSELECT 1--1;\nSELECT 2;"
        assert texts(split_statements(sql, "mysql")) == [
            "INSERT INTO `a;b` VALUES ('it\\'s;')",
            "SELECT 1--1",
            "SELECT 2",
        ]

    def test_mysql_delimiter(self) -> None:
        sql = (
            "CREATE TABLE t (id INT);\n"
            "DELIMITER //\n"
            "CREATE PROCEDURE p()\nBEGIN\n  SELECT 1;\n  SELECT 2;\nEND //\n"
            "DELIMITER ;\n"
            "CALL p();\n"
        )
        statements = split_statements(sql, "mysql")
        assert [s.line for s in statements] == [1, 3, 9]
        assert statements[1].text == "CREATE PROCEDURE p()\nBEGIN\n  SELECT 1;\n  SELECT 2;\nEND"
        assert statements[2].text == "CALL p()"

    def test_sqlite_trigger_bodies_stay_whole(self) -> None:
        sql = (
            "CREATE TABLE a (id INTEGER);\n"
            "CREATE TRIGGER t AFTER INSERT ON a BEGIN\n"
            "  INSERT INTO a VALUES (NEW.id + 1);\n"
            "  DELETE FROM a WHERE id < 0;\n"
            "END;\n"
            "SELECT 1;"
        )
        statements = split_statements(sql, "sqlite")
        assert [s.line for s in statements] == [1, 2, 6]
        assert statements[1].text.endswith("END")

    def test_unterminated_quote_keeps_the_rest_as_one_statement(self) -> None:
        # The server reports the syntax error, with the right line.
        assert split_statements("SELECT 1;\nSELECT 'oops;\nSELECT 3;") == [
            Statement("SELECT 1", 1),
            Statement("SELECT 'oops;\nSELECT 3;", 2),
        ]

    def test_shortened(self) -> None:
        statement = Statement("SELECT\n   " + "x, " * 100 + "y", 1)
        short = statement.shortened(40)
        assert len(short) == 40
        assert short.startswith("SELECT x, x,")
        assert short.endswith("...")
