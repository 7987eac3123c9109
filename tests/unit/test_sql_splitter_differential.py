"""The fast statement splitter equals the old token-by-token one on every script (issue 21).

``reference_splitter`` is the splitter as it was (tests/support); ``lockstep.sql_splitter`` jumps
between events with regular expressions instead. Both get the same scripts: fragments chosen to
hit every rule and its edge (dollar quotes and tags, nested and executable comments, E'' and
MySQL backslashes, doubled quotes, backticks, DELIMITER lines, SQLite triggers, Unicode white
space, unterminated everything), glued at random, and realistic migration files. They must
return the same statements with the same lines.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import reference_splitter
from lockstep import sql_splitter

DIALECTS = ("postgresql", "mysql", "sqlite", "generic")

FRAGMENTS = (
    ";", ";", ";", " ", " ", "\n", "\n", "\r\n", "\t", "\u00a0", "\x1c", "\u2028",
    "SELECT 1", "INSERT INTO t VALUES (1, 'a')", "x", "e", "E", "_", "1", "é", "a$b", "$1",
    "'", "''", "'it''s'", "'a;b'", "\\", "\\'", "E'", "e'", "xE'", "E'\\''", "'\\\\'",
    '"', '""', '"a;b"', "`", "``", "`a;b`",
    "$$", "$tag$", "$TAG$", "$é$", "$$ ; $$", "$fn$ x; $x$ y $fn$", "$", "$1$",
    "--", "-- ", "--\n", "-", "- ", "#", "# c;\n",
    "/*", "*/", "/* c; */", "/*/", "/**/", "/* a /* b */ c; */", "/*!", "/*! 50001 x; */",
    "DELIMITER //\n", "\nDELIMITER //\n", "DELIMITER ;\n", "\nDELIMITER ;\n", "delimiter $$\n",
    "  DELIMITER //\n", "DELIMITER END\n", "DELIMITER //", "//", "END", "END//",
    "CREATE TRIGGER tr AFTER INSERT ON t BEGIN ", "UPDATE t SET a = 1; ", " END",
    "BEGIN", "CASE WHEN 1 THEN 2 END",
)  # fmt: skip


def outcome(split: Callable[..., list[Any]], sql: str, dialect: str) -> object:
    """The statements as (text, line), or the exception's type: a NUL in a SQLite script makes
    both raise ValueError (sqlite3.complete_statement refuses it)."""
    try:
        return [(s.text, s.line) for s in split(sql, dialect)]
    except ValueError as error:
        return type(error)


def assert_same(sql: str, dialect: str) -> None:
    old = outcome(reference_splitter.split_statements, sql, dialect)
    new = outcome(sql_splitter.split_statements, sql, dialect)
    assert new == old, (sql, dialect)


@pytest.mark.parametrize("dialect", DIALECTS)
def test_random_fragment_scripts_split_alike(dialect: str) -> None:
    rng = random.Random(f"issue-21-{dialect}")
    for _ in range(3000):
        sql = "".join(rng.choice(FRAGMENTS) for _ in range(rng.randint(0, 30)))
        assert_same(sql, dialect)


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=4), max_size=25).map("".join),
    st.sampled_from(DIALECTS),
)
def test_hypothesis_scripts_split_alike(sql: str, dialect: str) -> None:
    assert_same(sql, dialect)


def realistic_script(rng: random.Random, dialect: str) -> str:
    parts = ["-- a migration\n/* header; with a semicolon */\n"]
    for i in range(rng.randint(1, 40)):
        choice = rng.randrange(6)
        if choice == 0:
            parts.append(f"CREATE TABLE t{i} (id int PRIMARY KEY, note text DEFAULT 'a;b');\n")
        elif choice == 1:
            parts.append(f"INSERT INTO t VALUES ({i}, 'it''s; {i}', E'\\\\x;');  -- done;\n")
        elif choice == 2 and dialect in ("postgresql", "generic"):
            parts.append(
                f"CREATE FUNCTION f{i}() RETURNS int AS $body$\nBEGIN RETURN {i}; END;\n"
                f"$body$ LANGUAGE plpgsql;\n"
            )
        elif choice == 2 and dialect == "mysql":
            parts.append(
                f"DELIMITER //\nCREATE PROCEDURE p{i}() BEGIN SELECT 'x;'; SELECT {i}; END//\n"
                "DELIMITER ;\n"
            )
        elif choice == 2:
            parts.append(
                f"CREATE TRIGGER tr{i} AFTER INSERT ON t BEGIN UPDATE t SET a = {i}; END;\n"
            )
        elif choice == 3:
            parts.append(f'/* nested /* comment; */ still; */ SELECT `c{i}`, "q;{i}";\n')
        elif choice == 4:
            parts.append(f"# hash comment; {i}\nSELECT '\\'';\n/*! 40101 SET x = {i} */;\n")
        else:
            parts.append(f"\n\n   SELECT {i}\n   FROM t\n   WHERE a = '{i}'\n;\n")
    return "".join(parts)


@pytest.mark.parametrize("dialect", DIALECTS)
def test_realistic_migration_files_split_alike(dialect: str) -> None:
    rng = random.Random(f"realistic-{dialect}")
    for _ in range(300):
        assert_same(realistic_script(rng, dialect), dialect)


def test_a_50k_statement_file_splits_alike() -> None:
    """The case issue 21 measured: 50,000 INSERTs (5 MB) in one file. Its speed is measured by
    bench/runner_overhead.py beside psql, not by a timed unit test."""
    sql = "CREATE TABLE big (id int, name text, payload text);\n" + "".join(
        f"INSERT INTO big VALUES ({i}, 'name {i}', '{'payload ' * 6}{i:08d}');\n"
        for i in range(50_000)
    )
    new = sql_splitter.split_statements(sql, "postgresql")
    old = reference_splitter.split_statements(sql, "postgresql")
    assert [(s.text, s.line) for s in new] == [(s.text, s.line) for s in old]
    assert len(new) == 50_001 and new[-1].line == 50_001
