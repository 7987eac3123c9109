"""The SQL change classifier: rule ids per statement, lines, new tables, ignored tables."""

from __future__ import annotations

import pytest

from lockstep.classify import Dialect, Finding, Report, SqlFile, classify, dialect_for_engine


def rules_of(sql: str, dialect: Dialect, **options: frozenset[str]) -> set[str]:
    report = classify([SqlFile("V1__change.sql", sql)], dialect, **options)
    return {finding.rule for finding in report.findings}


def only_finding(sql: str, dialect: Dialect) -> Finding:
    findings = classify([SqlFile("V1__change.sql", sql)], dialect).findings
    assert len(findings) == 1, findings
    return findings[0]


# Every statement runs against tables the plan did not create ("existing" tables).
POSTGRESQL_CASES: list[tuple[str, set[str]]] = [
    # destructive: data loss
    ("DROP TABLE users", {"drop-table"}),
    ("DROP TABLE IF EXISTS public.users, orders CASCADE", {"drop-table"}),
    ("ALTER TABLE users DROP COLUMN email", {"drop-column"}),
    ("DROP SCHEMA billing CASCADE", {"drop-schema"}),
    ("DROP DATABASE shop", {"drop-database"}),
    ("TRUNCATE users, orders", {"truncate"}),
    ("DELETE FROM users", {"delete-without-where"}),
    ("UPDATE users SET active = false", {"update-without-where"}),
    ("DROP TYPE mood CASCADE", {"drop-type"}),
    # breaking: old code or existing data
    ("DROP TYPE mood", {"drop-type"}),
    ("ALTER TABLE users RENAME TO people", {"rename-table"}),
    ("ALTER TABLE users RENAME COLUMN name TO full_name", {"rename-column"}),
    ("ALTER TABLE users ALTER COLUMN age TYPE smallint", {"alter-column-type"}),
    ("ALTER TABLE users ALTER COLUMN id TYPE text USING id::text", {"alter-column-type"}),
    ("ALTER TYPE mood RENAME VALUE 'sad' TO 'unhappy'", {"enum-value-removal"}),
    ("ALTER TABLE users ADD COLUMN tier int NOT NULL", {"add-not-null-without-default"}),
    ("ALTER TABLE users ALTER COLUMN email SET NOT NULL", {"add-not-null-without-default"}),
    ("CREATE INDEX users_email ON users (email)", {"create-index-locks-writes"}),
    (
        "CREATE UNIQUE INDEX users_email ON users (email)",
        {"create-index-locks-writes", "add-unique-constraint"},
    ),
    # Built CONCURRENTLY, a duplicate fails the build without blocking anyone (squawk agrees).
    # shown (info): only the live schema can tell it will fail on duplicates
    ("CREATE UNIQUE INDEX CONCURRENTLY users_email ON users (email)", {"add-unique-constraint"}),
    ("ALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE (email)", {"add-unique-constraint"}),
    ("ALTER TABLE users ADD PRIMARY KEY (id)", {"add-unique-constraint"}),
    (
        "ALTER TABLE orders ADD CONSTRAINT orders_user_fk "
        "FOREIGN KEY (user_id) REFERENCES users(id)",
        {"add-foreign-key-validates"},
    ),
    ("ALTER TABLE users ADD CONSTRAINT adult CHECK (age >= 18)", {"add-check-constraint"}),
    (
        "ALTER TABLE users ADD COLUMN code int NOT NULL, DROP COLUMN legacy",
        {"add-not-null-without-default", "drop-column"},
    ),
    ("ALTER TABLE users ADD COLUMN garbage garbage garbage", {"parse-error"}),
    # safe
    ("CREATE TABLE accounts (id bigint PRIMARY KEY, name text NOT NULL)", set()),
    ("ALTER TABLE users ADD COLUMN nickname text", set()),
    ("ALTER TABLE users ADD COLUMN tier int NOT NULL DEFAULT 0", set()),
    ("ALTER TABLE users ADD COLUMN seq bigserial", {"add-column-rewrites-table"}),
    (
        "ALTER TABLE users ADD COLUMN n bigint GENERATED ALWAYS AS IDENTITY",
        {"add-column-rewrites-table"},
    ),
    ("CREATE INDEX CONCURRENTLY users_email ON users (email)", set()),
    (
        "ALTER TABLE orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) "
        "REFERENCES users(id) NOT VALID",
        set(),
    ),
    ("ALTER TABLE users ADD CONSTRAINT adult CHECK (age >= 18) NOT VALID", set()),
    ("ALTER TABLE users VALIDATE CONSTRAINT adult", set()),
    ("ALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE USING INDEX users_email", set()),
    ("ALTER TABLE users ALTER COLUMN email DROP NOT NULL", set()),
    ("ALTER TABLE users ALTER COLUMN tier SET DEFAULT 1", set()),
    ("ALTER TYPE mood ADD VALUE 'ecstatic'", set()),
    ("INSERT INTO users (id, name) VALUES (1, 'a')", set()),
    ("UPDATE users SET active = true WHERE id = 1", set()),
    ("DELETE FROM users WHERE id = 1", set()),
    ("CREATE VIEW active_users AS SELECT * FROM users WHERE active", set()),
    ("COMMENT ON TABLE users IS 'people'", set()),
    ("CREATE TYPE mood AS ENUM ('happy', 'sad')", set()),
    ("DROP INDEX CONCURRENTLY users_email", set()),
    ("ALTER TABLE users DROP CONSTRAINT adult", set()),
    ("CREATE EXTENSION IF NOT EXISTS pgcrypto", set()),
    ("BEGIN", {"uncommitted-transaction"}),
    ("BEGIN;\nSELECT 1;\nCOMMIT", set()),
    ("COMMIT", set()),
]

MYSQL_CASES: list[tuple[str, set[str]]] = [
    # destructive
    ("DROP TABLE users", {"drop-table"}),
    ("DROP TABLE IF EXISTS users, orders", {"drop-table"}),
    ("ALTER TABLE users DROP COLUMN email", {"drop-column"}),
    ("ALTER TABLE users DROP email", {"drop-column"}),
    ("DROP DATABASE shop", {"drop-database"}),
    ("DROP SCHEMA shop", {"drop-schema"}),
    ("TRUNCATE TABLE users", {"truncate"}),
    ("DELETE FROM users", {"delete-without-where"}),
    ("UPDATE users SET active = 0", {"update-without-where"}),
    # breaking
    ("ALTER TABLE users RENAME TO people", {"rename-table"}),
    ("RENAME TABLE users TO people", {"rename-table"}),
    ("ALTER TABLE users RENAME COLUMN name TO full_name", {"rename-column"}),
    ("ALTER TABLE users MODIFY COLUMN age TINYINT", {"alter-column-type"}),
    (
        "ALTER TABLE users CHANGE COLUMN name full_name VARCHAR(50)",
        {"rename-column", "alter-column-type"},
    ),
    ("ALTER TABLE users ADD COLUMN tier INT NOT NULL", {"add-not-null-without-default"}),
    ("CREATE UNIQUE INDEX users_email ON users (email)", {"add-unique-constraint"}),
    ("ALTER TABLE users ADD UNIQUE INDEX users_email (email)", {"add-unique-constraint"}),
    ("ALTER TABLE users ADD CONSTRAINT users_email UNIQUE (email)", {"add-unique-constraint"}),
    ("ALTER TABLE users ADD PRIMARY KEY (id)", {"add-unique-constraint"}),
    (
        "ALTER TABLE orders ADD CONSTRAINT orders_user_fk "
        "FOREIGN KEY (user_id) REFERENCES users(id)",
        {"add-foreign-key-validates"},
    ),
    ("ALTER TABLE users ADD CONSTRAINT adult CHECK (age >= 18)", {"add-check-constraint"}),
    ("CREATE INDEX users_email ON users (email) ALGORITHM=COPY", {"create-index-locks-writes"}),
    ("CREATE INDEX users_email ON users (email) LOCK=SHARED", {"create-index-locks-writes"}),
    (
        "ALTER TABLE users ADD INDEX users_email (email), LOCK=EXCLUSIVE",
        {"create-index-locks-writes"},
    ),
    (
        "ALTER TABLE users ALGORITHM=COPY, ADD INDEX users_email (email)",
        {"create-index-locks-writes"},
    ),
    ("ALTER TABLE users CONVERT TO CHARACTER SET utf8mb4", {"alter-copies-table"}),
    ("ALTER TABLE users RENAME AS people", {"parse-error"}),
    # safe
    ("CREATE TABLE accounts (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(50) NOT NULL)", set()),
    ("ALTER TABLE users ADD COLUMN nickname VARCHAR(50)", set()),
    ("ALTER TABLE users ADD COLUMN tier INT NOT NULL DEFAULT 0", set()),
    ("ALTER TABLE users ADD COLUMN tier INT NOT NULL DEFAULT 0, ALGORITHM=INSTANT", set()),
    ("CREATE INDEX users_email ON users (email)", set()),
    ("CREATE INDEX users_email ON users (email) ALGORITHM=INPLACE LOCK=NONE", set()),
    ("CREATE INDEX users_lock ON users (`lock`, algorithm)", set()),
    ("ALTER TABLE users ADD INDEX users_email (email), ALGORITHM=INPLACE, LOCK=NONE", set()),
    ("ALTER TABLE users ALTER COLUMN tier SET DEFAULT 1", set()),
    ("ALTER TABLE users DROP INDEX users_email", set()),
    ("ALTER TABLE orders DROP FOREIGN KEY orders_user_fk", set()),
    ("INSERT INTO users (id, name) VALUES (1, 'a')", set()),
    ("UPDATE users SET active = 1 WHERE id = 1", set()),
    ("DELETE FROM users WHERE id = 1", set()),
    ("CREATE VIEW active_users AS SELECT * FROM users WHERE active = 1", set()),
    ("SET NAMES utf8mb4", set()),
    ("START TRANSACTION", set()),
]

SQLITE_CASES: list[tuple[str, set[str]]] = [
    ("DROP TABLE users", {"drop-table"}),
    ("ALTER TABLE users DROP COLUMN email", {"drop-column"}),
    ("ALTER TABLE users RENAME TO people", {"rename-table"}),
    ("ALTER TABLE users RENAME COLUMN name TO full_name", {"rename-column"}),
    ("ALTER TABLE users ADD COLUMN tier INTEGER NOT NULL", {"add-not-null-without-default"}),
    ("CREATE UNIQUE INDEX IF NOT EXISTS users_email ON users (email)", {"add-unique-constraint"}),
    ("DELETE FROM users", {"delete-without-where"}),
    ("CREATE INDEX users_email ON users (email)", set()),
    ("ALTER TABLE users ADD COLUMN tier INTEGER NOT NULL DEFAULT 0", set()),
    ("PRAGMA foreign_keys = OFF", set()),
    ("INSERT OR REPLACE INTO users (id) VALUES (1)", set()),
]


class TestRulesPerStatement:
    @pytest.mark.parametrize(("sql", "expected"), POSTGRESQL_CASES)
    def test_postgresql(self, sql: str, expected: set[str]) -> None:
        assert rules_of(sql, "postgresql") == expected

    @pytest.mark.parametrize(("sql", "expected"), MYSQL_CASES)
    def test_mysql(self, sql: str, expected: set[str]) -> None:
        assert rules_of(sql, "mysql") == expected

    @pytest.mark.parametrize(("sql", "expected"), SQLITE_CASES)
    def test_sqlite(self, sql: str, expected: set[str]) -> None:
        assert rules_of(sql, "sqlite") == expected


class TestMysqlRenameTable:
    def test_each_pair_of_existing_tables_is_a_finding(self) -> None:
        sql = "CREATE TABLE fresh (id INT);\nRENAME TABLE shop.`to` TO shop.b, fresh TO c, d TO `e`"
        findings = classify([SqlFile("a.sql", sql)], "mysql").findings
        assert [(f.rule, f.line) for f in findings] == [("rename-table", 2), ("rename-table", 2)]
        assert "shop.to to shop.b" in findings[0].message
        assert "d to e" in findings[1].message


class TestSeverities:
    @pytest.mark.parametrize(
        ("sql", "dialect", "severity"),
        [
            ("DROP TABLE users", "postgresql", "destructive"),
            ("DELETE FROM users", "mysql", "destructive"),
            ("DROP TYPE mood CASCADE", "postgresql", "destructive"),
            ("DROP TYPE mood", "postgresql", "breaking"),
            ("ALTER TABLE users RENAME COLUMN a TO b", "postgresql", "breaking"),
            ("CREATE INDEX i ON users (a)", "postgresql", "breaking"),
            ("ALTER TABLE users ADD COLUMN garbage garbage garbage", "postgresql", "breaking"),
        ],
    )
    def test_severity(self, sql: str, dialect: Dialect, severity: str) -> None:
        assert only_finding(sql, dialect).severity == severity

    def test_destructive_is_true_for_breaking_findings(self) -> None:
        report = classify([SqlFile("a.sql", "CREATE INDEX i ON users (a)")], "postgresql")
        assert report.destructive is True

    def test_destructive_is_false_without_findings_or_with_info_only(self) -> None:
        report = classify(
            [SqlFile("a.sql", "CREATE INDEX CONCURRENTLY i ON users (a)")], "postgresql"
        )
        assert report.destructive is False
        info = Finding("x", "info", "just so you know", "a.sql", 1, "SELECT 1")
        assert Report(1, {"SELECT": 1}, (info,)).destructive is False


class TestLines:
    SCRIPT = (
        "-- V2: customer changes\n"  # 1
        "\n"  # 2
        "ALTER TABLE customers ADD COLUMN note text;\n"  # 3
        "/* the risky part,\n"  # 4
        "   spread over lines */\n"  # 5
        "\n"  # 6
        "ALTER TABLE customers\n"  # 7
        "    DROP COLUMN legacy;   -- gone\n"  # 8
        "-- a comment between statements\n"  # 9
        "  DELETE FROM customers; UPDATE customers SET note = 'é';\n"  # 10
        "\n"  # 11
        "DROP TABLE audit"  # 12, no final semicolon
    )

    @pytest.mark.parametrize("dialect", ["postgresql", "mysql", "sqlite"])
    def test_findings_point_at_the_statements_first_line(self, dialect: Dialect) -> None:
        findings = classify([SqlFile("V2__x.sql", self.SCRIPT)], dialect).findings
        assert [(f.rule, f.line) for f in findings] == [
            ("drop-column", 7),
            ("delete-without-where", 10),
            ("update-without-where", 10),
            ("drop-table", 12),
        ]
        assert {f.file for f in findings} == {"V2__x.sql"}

    @pytest.mark.parametrize("dialect", ["postgresql", "mysql"])
    def test_statement_text_starts_after_leading_comments(self, dialect: Dialect) -> None:
        findings = classify([SqlFile("V2__x.sql", self.SCRIPT)], dialect).findings
        assert findings[0].statement == "ALTER TABLE customers DROP COLUMN legacy"
        assert findings[1].statement == "DELETE FROM customers"

    def test_mysql_hash_comments_are_skipped(self) -> None:
        sql = "# setup\nSET NAMES utf8mb4;\n# now the drop\n\nDROP TABLE t;"
        assert only_finding(sql, "mysql").line == 5

    def test_postgresql_dollar_quoted_bodies_do_not_split_statements(self) -> None:
        sql = (
            "CREATE FUNCTION f() RETURNS int AS $$\n"
            "BEGIN\n  DELETE FROM t;\n  RETURN 1;\nEND $$ LANGUAGE plpgsql;\n"
            "DROP TABLE t;\n"
        )
        report = classify([SqlFile("a.sql", sql)], "postgresql")
        assert report.statements == 2
        found = [(f.rule, f.line) for f in report.findings]
        assert found == [("procedural-sql", 1), ("drop-table", 6)]


class TestNewTables:
    CREATE = SqlFile(
        "V1__create.sql",
        "CREATE TABLE orders (id bigint PRIMARY KEY, total numeric(10, 2), note varchar(100));",
    )
    CHANGE = SqlFile(
        "V2__change.sql",
        "CREATE INDEX orders_total ON orders (total);\n"
        "CREATE UNIQUE INDEX orders_note ON orders (note);\n"
        "ALTER TABLE orders ADD COLUMN status text NOT NULL;\n"
        "ALTER TABLE orders ALTER COLUMN note TYPE varchar(10);\n"
        "ALTER TABLE orders ADD CONSTRAINT positive CHECK (total > 0);\n"
        "ALTER TABLE orders RENAME COLUMN note TO remark;\n"
        "ALTER TABLE orders DROP COLUMN remark;\n",
    )

    def test_changes_to_a_table_created_earlier_in_the_plan_are_not_findings(self) -> None:
        report = classify([self.CREATE, self.CHANGE], "postgresql")
        assert report.findings == ()
        assert report.statements == 8

    def test_the_same_changes_to_an_existing_table_are_findings(self) -> None:
        report = classify([self.CHANGE], "postgresql")
        assert {f.rule for f in report.findings} == {
            "create-index-locks-writes",
            "add-unique-constraint",
            "add-not-null-without-default",
            "alter-column-type",
            "add-check-constraint",
            "rename-column",
            "drop-column",
        }
        assert {f.file for f in report.findings} == {"V2__change.sql"}

    def test_order_matters_a_table_created_later_is_existing_before(self) -> None:
        report = classify([self.CHANGE, self.CREATE], "postgresql")
        assert report.findings != ()

    @pytest.mark.parametrize("dialect", ["postgresql", "mysql", "sqlite"])
    def test_dropping_a_table_created_in_the_plan_is_fine(self, dialect: Dialect) -> None:
        files = [
            SqlFile("V1.sql", "CREATE TABLE scratch (id int)"),
            SqlFile("V2.sql", "DELETE FROM scratch; DROP TABLE scratch"),
        ]
        assert classify(files, dialect).findings == ()

    def test_an_existing_table_dropped_and_created_again_is_new(self) -> None:
        sql = "DROP TABLE t; CREATE TABLE t (id int); CREATE INDEX i ON t (id)"
        assert rules_of(sql, "postgresql") == {"drop-table"}

    def test_renamed_new_table_stays_new(self) -> None:
        sql = "CREATE TABLE t (id int); ALTER TABLE t RENAME TO u; CREATE INDEX i ON u (id)"
        assert rules_of(sql, "postgresql") == set()

    def test_create_table_if_not_exists_does_not_make_the_table_new(self) -> None:
        sql = "CREATE TABLE IF NOT EXISTS t (id int); CREATE INDEX i ON t (id)"
        assert rules_of(sql, "postgresql") == {"create-index-locks-writes"}

    def test_table_names_compare_case_insensitively_without_schema(self) -> None:
        sql = 'CREATE TABLE app."Orders" (id int); CREATE INDEX i ON ORDERS (id)'
        assert rules_of(sql, "postgresql") == set()

    def test_mysql_new_tables(self) -> None:
        files = [
            SqlFile("V1.sql", "CREATE TABLE orders (id INT PRIMARY KEY, s ENUM('a','b'))"),
            SqlFile(
                "V2.sql",
                "ALTER TABLE orders MODIFY s ENUM('a'); ALTER TABLE orders ADD x INT NOT NULL;"
                "RENAME TABLE orders TO purchases; ALTER TABLE purchases DROP COLUMN x",
            ),
        ]
        assert classify(files, "mysql").findings == ()


class TestKnownTypes:
    def test_postgresql_varchar_shrink_is_narrowing(self) -> None:
        sql = (
            "CREATE TABLE IF NOT EXISTS users (name varchar(100));\n"
            "ALTER TABLE users ALTER COLUMN name TYPE varchar(20);"
        )
        finding = only_finding(sql, "postgresql")
        assert finding.rule == "alter-column-type"
        assert "from varchar(100) to varchar(20), narrowing" in finding.message

    def test_postgresql_varchar_growth_is_not_a_finding(self) -> None:
        sql = (
            "ALTER TABLE users ADD COLUMN name varchar(20);\n"
            "ALTER TABLE users ALTER COLUMN name TYPE varchar(100);\n"
            "ALTER TABLE users ALTER COLUMN name TYPE text;"
        )
        assert rules_of(sql, "postgresql") == set()

    def test_postgresql_integer_narrowing_known_from_an_earlier_file(self) -> None:
        files = [
            SqlFile("V1.sql", "ALTER TABLE users ADD COLUMN visits bigint"),
            SqlFile("V2.sql", "ALTER TABLE users ALTER COLUMN visits TYPE int"),
        ]
        (finding,) = classify(files, "postgresql").findings
        assert "narrowing" in finding.message
        assert finding.file == "V2.sql"

    def test_unknown_previous_type_does_not_claim_narrowing(self) -> None:
        finding = only_finding("ALTER TABLE users ALTER COLUMN n TYPE int", "postgresql")
        assert "narrowing" not in finding.message

    def test_mysql_decimal_shrink_is_narrowing(self) -> None:
        sql = (
            "ALTER TABLE orders ADD COLUMN total DECIMAL(12,2);\n"
            "ALTER TABLE orders MODIFY total DECIMAL(8,2);"
        )
        finding = only_finding(sql, "mysql")
        assert (finding.rule, finding.line) == ("alter-column-type", 2)
        assert "narrowing" in finding.message

    def test_mysql_enum_value_removal(self) -> None:
        sql = (
            "ALTER TABLE users ADD COLUMN s ENUM('new','active','gone') NULL;\n"
            "ALTER TABLE users MODIFY s ENUM('new','active') NULL;"
        )
        finding = only_finding(sql, "mysql")
        assert (finding.rule, finding.severity) == ("enum-value-removal", "destructive")
        assert "'gone'" in finding.message

    def test_mysql_enum_value_append_is_not_a_finding(self) -> None:
        sql = (
            "ALTER TABLE users ADD COLUMN s ENUM('new','active') NULL;\n"
            "ALTER TABLE users MODIFY s ENUM('new','active','gone') NULL;"
        )
        assert rules_of(sql, "mysql") == set()

    def test_mysql_modify_restating_the_known_type_is_not_a_finding(self) -> None:
        sql = "ALTER TABLE users ADD COLUMN n INT NULL; ALTER TABLE users MODIFY n INT NULL;"
        assert rules_of(sql, "mysql") == set()

    def test_mysql_modify_to_not_null_of_a_known_nullable_column(self) -> None:
        sql = "ALTER TABLE users ADD COLUMN n INT NULL; ALTER TABLE users MODIFY n INT NOT NULL;"
        assert rules_of(sql, "mysql") == {"add-not-null-without-default"}


class TestIgnoredTables:
    BOOKKEEPING = frozenset({"public.Alembic_Version", "lockstep_schema_history"})

    @pytest.mark.parametrize("dialect", ["postgresql", "mysql", "sqlite"])
    def test_statements_on_ignored_tables_produce_no_findings(self, dialect: Dialect) -> None:
        sql = (
            "UPDATE alembic_version SET version_num = '2';\n"
            "DELETE FROM LOCKSTEP_SCHEMA_HISTORY;\n"
            "DROP TABLE public.alembic_version;\n"
        )
        if dialect == "sqlite":
            sql = sql.replace("public.", "")
        report = classify([SqlFile("a.sql", sql)], dialect, ignore_tables=self.BOOKKEEPING)
        assert report.findings == ()
        assert report.statements == 3
        assert report.summary == {"UPDATE": 1, "DELETE": 1, "DROP TABLE": 1}

    def test_other_tables_in_the_same_statement_still_count(self) -> None:
        finding = only_finding("DROP TABLE alembic_version, users", "postgresql")
        assert "users" in finding.message
        report = classify(
            [SqlFile("a.sql", "DROP TABLE alembic_version, users")],
            "postgresql",
            ignore_tables=self.BOOKKEEPING,
        )
        assert [f.rule for f in report.findings] == ["drop-table"]
        assert "alembic_version" not in report.findings[0].message

    def test_without_ignore_tables_the_same_statements_are_findings(self) -> None:
        assert rules_of("UPDATE alembic_version SET version_num = '2'", "postgresql") == {
            "update-without-where"
        }


ALEMBIC_OFFLINE = """BEGIN;

CREATE TABLE alembic_version (
    version_num VARCHAR(32) NOT NULL,
    CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)
);

-- Running upgrade  -> 1a2b

CREATE TABLE account (
    id INTEGER NOT NULL,
    name VARCHAR(50) NOT NULL,
    PRIMARY KEY (id)
);

INSERT INTO alembic_version (version_num) VALUES ('1a2b');

-- Running upgrade 1a2b -> 2b3c

ALTER TABLE account ADD COLUMN email VARCHAR(200);

CREATE INDEX ix_account_email ON account (email);

UPDATE alembic_version SET version_num='2b3c' WHERE alembic_version.version_num = '1a2b';

COMMIT;
"""

ALEMBIC_NEXT = """BEGIN;

-- Running upgrade 2b3c -> 3c4d

ALTER TABLE account DROP COLUMN email;

UPDATE alembic_version SET version_num='3c4d' WHERE alembic_version.version_num = '2b3c';

COMMIT;
"""


class TestAlembicOffline:
    @pytest.mark.parametrize("dialect", ["postgresql", "mysql", "sqlite"])
    def test_first_upgrade_classifies_cleanly(self, dialect: Dialect) -> None:
        report = classify(
            [SqlFile("upgrade.sql", ALEMBIC_OFFLINE)],
            dialect,
            ignore_tables=frozenset({"alembic_version"}),
        )
        assert report.findings == ()
        assert report.statements == 8
        assert report.summary == {
            "BEGIN": 1,
            "CREATE TABLE": 2,
            "INSERT": 1,
            "ALTER TABLE": 1,
            "CREATE INDEX": 1,
            "UPDATE": 1,
            "COMMIT": 1,
        }

    @pytest.mark.parametrize("dialect", ["postgresql", "mysql", "sqlite"])
    def test_later_upgrade_reports_the_drop_at_its_line(self, dialect: Dialect) -> None:
        report = classify(
            [SqlFile("upgrade.sql", ALEMBIC_NEXT)],
            dialect,
            ignore_tables=frozenset({"alembic_version"}),
        )
        assert [(f.rule, f.line, f.statement) for f in report.findings] == [
            ("drop-column", 5, "ALTER TABLE account DROP COLUMN email")
        ]


class TestSummary:
    def test_counts_statement_kinds_across_files(self) -> None:
        files = [
            SqlFile("V1.sql", "CREATE TABLE a (id int); CREATE TABLE b (id int);"),
            SqlFile(
                "V2.sql",
                "CREATE INDEX CONCURRENTLY i ON c (x); ALTER TABLE c ADD COLUMN y int;"
                "ALTER TABLE c ADD COLUMN z int; INSERT INTO a VALUES (1); DROP TABLE b;",
            ),
        ]
        report = classify(files, "postgresql")
        assert report.statements == 7
        assert report.summary == {
            "CREATE TABLE": 2,
            "CREATE INDEX": 1,
            "ALTER TABLE": 2,
            "INSERT": 1,
            "DROP TABLE": 1,
        }

    def test_mysql_summary(self) -> None:
        sql = (
            "CREATE TABLE a (id INT); ALTER TABLE a ADD b INT; CREATE INDEX i ON a (b);"
            "RENAME TABLE a TO c; UPDATE c SET b = 1 WHERE id = 1; TRUNCATE TABLE c;;"
        )
        report = classify([SqlFile("a.sql", sql)], "mysql")
        assert report.statements == 6
        assert report.summary == {
            "CREATE TABLE": 1,
            "ALTER TABLE": 1,
            "CREATE INDEX": 1,
            "RENAME TABLE": 1,
            "UPDATE": 1,
            "TRUNCATE": 1,
        }

    def test_empty_plan(self) -> None:
        report = classify([SqlFile("a.sql", "-- nothing\n"), SqlFile("b.sql", "")], "mysql")
        assert (report.statements, dict(report.summary), report.findings) == (0, {}, ())


class TestParseErrors:
    def test_postgresql_bad_statement_does_not_hide_the_others(self) -> None:
        sql = "SELECT 1;\nALTER TABLE users ADD COLUMN;\nDROP TABLE users;\n"
        report = classify([SqlFile("a.sql", sql)], "postgresql")
        assert [(f.rule, f.line) for f in report.findings] == [
            ("parse-error", 2),
            ("drop-table", 3),
        ]
        assert report.findings[0].severity == "breaking"
        assert "syntax error at end of input" in report.findings[0].message
        assert report.statements == 3

    def test_postgresql_lines_after_a_parse_error_skip_comments(self) -> None:
        sql = "SELECT 1;\n-- why\n/* how */\nALTER TABLE t ADD COLUMN;\n-- next\nDROP TABLE t"
        report = classify([SqlFile("a.sql", sql)], "postgresql")
        assert [(f.line, f.statement) for f in report.findings] == [
            (4, "ALTER TABLE t ADD COLUMN"),
            (6, "DROP TABLE t"),
        ]

    def test_mysql_parse_error_names_the_parser_error(self) -> None:
        sql = "INSERT INTO t VALUES (1);\nALTER TABLE t RENAME AS u;\nDROP TABLE t;"
        report = classify([SqlFile("a.sql", sql)], "mysql")
        assert [(f.rule, f.line) for f in report.findings] == [
            ("parse-error", 2),
            ("drop-table", 3),
        ]
        assert "Expected table name" in report.findings[0].message

    def test_mysql_unreadable_script(self) -> None:
        finding = only_finding("\n\nINSERT INTO t VALUES ('unterminated", "mysql")
        assert (finding.rule, finding.line) == ("parse-error", 3)

    def test_opaque_harmless_commands_are_not_findings(self) -> None:
        assert rules_of("LOCK TABLES users WRITE; UNLOCK TABLES", "mysql") == set()


class TestStatementText:
    def test_whitespace_is_collapsed(self) -> None:
        finding = only_finding("DROP\n   TABLE\t\tusers", "postgresql")
        assert finding.statement == "DROP TABLE users"

    def test_long_statements_are_clipped_to_200_characters(self) -> None:
        columns = ", ".join(f"column_number_{i}" for i in range(40))
        finding = only_finding(f"UPDATE users SET ({columns}) = (SELECT 1)", "postgresql")
        assert len(finding.statement) == 200
        assert finding.statement.endswith("...")
        assert finding.statement.startswith("UPDATE users SET (column_number_0, column_number_1")

    def test_a_statement_of_exactly_200_characters_is_kept_whole(self) -> None:
        name = "t" * (200 - len("DROP TABLE "))
        finding = only_finding(f"DROP TABLE {name}", "mysql")
        assert finding.statement == f"DROP TABLE {name}"

    def test_to_dict(self) -> None:
        finding = only_finding("DROP TABLE users", "postgresql")
        assert finding.to_dict() == {
            "rule": "drop-table",
            "severity": "destructive",
            "message": finding.message,
            "file": "V1__change.sql",
            "line": 1,
            "statement": "DROP TABLE users",
        }


class TestDialectForEngine:
    @pytest.mark.parametrize(
        ("engine", "dialect"),
        [
            ("postgresql", "postgresql"),
            ("mysql", "mysql"),
            ("mariadb", "mysql"),
            ("sqlite", "sqlite"),
        ],
    )
    def test_known_engines(self, engine: str, dialect: str) -> None:
        assert dialect_for_engine(engine) == dialect

    @pytest.mark.parametrize("engine", ["oracle", "", "generic", "Postgres"])
    def test_unknown_engines(self, engine: str) -> None:
        with pytest.raises(ValueError, match="no SQL dialect"):
            dialect_for_engine(engine)


class TestStatementsThatCannotRunInATransaction:
    """The plan flags CONCURRENTLY (and its kin) in a file Lockstep would run in a transaction."""

    def test_concurrently_mixed_with_other_statements(self) -> None:
        report = classify(
            [
                SqlFile(
                    "V4__index.sql",
                    "ALTER TABLE orders ADD COLUMN remark text;\n"
                    "CREATE INDEX CONCURRENTLY orders_remark ON orders (remark);\n",
                )
            ],
            "postgresql",
        )
        flagged = [
            f for f in report.findings if f.rule == "no-transaction-statement-in-transaction"
        ]
        assert [(f.file, f.line, f.severity) for f in flagged] == [("V4__index.sql", 2, "breaking")]
        assert "lockstep:transaction=false" in flagged[0].message
        assert report.destructive

    @pytest.mark.parametrize(
        "sql",
        [
            "CREATE INDEX CONCURRENTLY orders_remark ON orders (remark);",
            "-- lockstep:transaction=false\nALTER TABLE orders ADD COLUMN remark text;\n"
            "CREATE INDEX CONCURRENTLY orders_remark ON orders (remark);",
        ],
        ids=["alone", "file-without-transaction"],
    )
    def test_not_flagged_where_it_runs_without_a_transaction(self, sql: str) -> None:
        assert "no-transaction-statement-in-transaction" not in {
            f.rule for f in classify([SqlFile("V4__index.sql", sql)], "postgresql").findings
        }

    def test_forced_transaction_is_flagged(self) -> None:
        sql = "-- lockstep:transaction=true\nVACUUM orders;"
        assert "no-transaction-statement-in-transaction" in {
            f.rule for f in classify([SqlFile("V4__vacuum.sql", sql)], "postgresql").findings
        }

    def test_another_tool_s_rendered_sql_is_left_to_the_tool(self) -> None:
        sql = "CREATE TABLE t (id int);\nCREATE INDEX CONCURRENTLY t_id ON t (id);"
        assert "no-transaction-statement-in-transaction" not in {
            f.rule for f in classify([SqlFile("a1b2c3d4", sql)], "postgresql").findings
        }


def test_a_tools_rendered_sql_may_begin_in_one_piece_and_commit_in_another() -> None:
    """Alembic's offline SQL opens with BEGIN in the first revision's piece and commits in
    the last: only Lockstep's own V/U files must close what they open."""
    pieces = [SqlFile("a1.sql", "BEGIN;\nCREATE TABLE t (a int);"), SqlFile("a2.sql", "COMMIT;")]
    assert classify(pieces, "postgresql").findings == ()
    assert rules_of("BEGIN;\nCREATE TABLE t (a int);", "postgresql") == {"uncommitted-transaction"}
