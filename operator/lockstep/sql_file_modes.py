"""How one SQL migration file runs: in one transaction, or statement by statement.

PostgreSQL cannot run some statements inside a transaction block (``CREATE INDEX
CONCURRENTLY``, ``VACUUM``, ...); SQLite cannot run ``VACUUM`` in one. Like Flyway on
PostgreSQL, a file that holds only such statements runs without a transaction. A file that
mixes them with ordinary statements is refused unless its header says how to run it, in the
spirit of Flyway's ``executeInTransaction`` and dbmate's ``-- transaction:false``::

    -- lockstep:transaction=false

(a comment line before the file's first statement; ``true`` forces one transaction).

Transaction control inside a file (``BEGIN``, ``COMMIT``, ``ROLLBACK``) would make Lockstep's
record of the file untrue (a COMMIT makes part of the file permanent before the file is
recorded, a ROLLBACK undoes a file that is then recorded as applied), so it is refused, with
one exception where it changes nothing: a PostgreSQL or SQLite file wrapped as a whole in
``BEGIN; ... COMMIT;``, the transaction Lockstep opens anyway, runs without its wrapper.
``COPY ... FROM stdin`` and psql's backslash commands need psql itself and are refused too.

Pure: no I/O. Every refusal is an :class:`lockstep.errors.InvalidSource` naming file and line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from lockstep import errors, sqlfiles
from lockstep.sqlfiles import Dialect, Statement

DIRECTIVE_EXAMPLE: Final = "-- lockstep:transaction=false"
_DIRECTIVE = re.compile(r"^\s*--\s*lockstep\s*:\s*(?P<body>.*?)\s*$", re.I)
_TRANSACTION_SETTING = re.compile(r"^transaction\s*=\s*(?P<value>\w+)$", re.I)
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*|\S")
_WORDS_READ: Final = 12
# The first _WORDS_READ tokens of _WORD in one match (white space between them skipped, as
# findall skips it): one call per statement instead of a token list of the whole head.
_FIRST_WORDS: Final = re.compile(r"(?:\s*([A-Za-z_][A-Za-z0-9_$]*|\S))?" * _WORDS_READ)
_COMMENT = re.compile(r"/\*.*?\*/|--[^\n]*", re.S)
_FIRST_VERSION_WITH_ADD_VALUE_IN_TRANSACTION: Final = 12
_STARTS: Final = ("BEGIN", "START")
_ENDS: Final = ("COMMIT", "END")


@dataclass(frozen=True)
class FilePlan:
    """How a file runs: ``transactional`` or not, and the statements sent to the server."""

    name: str
    transactional: bool
    statements: tuple[Statement, ...]
    why: str  # for the log: why the file runs this way


def words(statement: Statement, limit: int = _WORDS_READ) -> list[str]:
    """The statement's first tokens, upper-cased, comments left out."""
    head = statement.text[:400]
    if "--" in head or "/*" in head:
        head = _COMMENT.sub(" ", head)
    if limit > _WORDS_READ:
        return [word.upper() for word in _WORD.findall(head)[:limit]]
    found = _FIRST_WORDS.match(head)
    tokens = " ".join(word for word in found.groups()[:limit] if word) if found else ""
    return tokens.upper().split(" ") if tokens else []  # tokens hold no space


def transaction_control(statement: Statement) -> str | None:
    """``BEGIN``/``COMMIT``/``ROLLBACK``/...: the words that make it transaction control."""
    return _transaction_control(words(statement, 3))


def _transaction_control(w: list[str]) -> str | None:
    if not w:
        return None
    match w[0]:
        case "BEGIN" if w[1:2] != ["NOT"]:  # MariaDB's BEGIN NOT ATOMIC is a block
            return "BEGIN"
        case "START" if w[1:2] == ["TRANSACTION"]:
            return "START TRANSACTION"
        case "COMMIT" | "END" | "ABORT":
            return w[0]
        case "ROLLBACK" if w[1:2] != ["TO"]:  # ROLLBACK TO SAVEPOINT stays inside
            return "ROLLBACK"
        case "PREPARE" if w[1:2] == ["TRANSACTION"]:
            return "PREPARE TRANSACTION"
        case "XA":
            return "XA"
    return None


def outside_transaction_only(
    statement: Statement, dialect: Dialect, server_major: int | None = None
) -> str | None:
    """Why ``statement`` cannot run inside a transaction block, or None when it can."""
    return _outside_transaction_only(words(statement), dialect, server_major)


def _outside_transaction_only(
    w: list[str], dialect: Dialect, server_major: int | None
) -> str | None:
    if dialect == "sqlite":
        return "VACUUM" if w[:1] == ["VACUUM"] else None
    if dialect not in ("postgresql", "generic"):
        return None
    first = " ".join(w[:2])
    if first in ("CREATE INDEX", "CREATE UNIQUE") and "CONCURRENTLY" in w[:4]:
        return "CREATE INDEX CONCURRENTLY"
    if first == "DROP INDEX" and w[2:3] == ["CONCURRENTLY"]:
        return "DROP INDEX CONCURRENTLY"
    if w[:1] == ["REINDEX"] and "CONCURRENTLY" in w:
        return "REINDEX CONCURRENTLY"
    if first == "ALTER TABLE" and "DETACH" in w and ("CONCURRENTLY" in w or "FINALIZE" in w):
        return "DETACH PARTITION CONCURRENTLY"
    if w[:1] == ["VACUUM"]:
        return "VACUUM"
    if first in ("CREATE DATABASE", "DROP DATABASE", "CREATE TABLESPACE", "DROP TABLESPACE"):
        return first
    if first == "ALTER SYSTEM":
        return first
    old_server = (
        server_major is not None and server_major < _FIRST_VERSION_WITH_ADD_VALUE_IN_TRANSACTION
    )
    if old_server and first == "ALTER TYPE" and "ADD" in w and "VALUE" in w:
        return "ALTER TYPE ... ADD VALUE (before PostgreSQL 12)"
    return None


def transaction_directive(sql_file: sqlfiles.SqlFile) -> bool | None:
    """The file's ``-- lockstep:transaction=...`` setting; None when it has none.

    Read from the comment lines before the first statement only, so a commented-out
    statement further down cannot change how the file runs.
    """
    found: bool | None = None
    for number, line in enumerate(sql_file.text.splitlines(), start=1):
        stripped = line.strip()
        if stripped and not stripped.startswith("--"):
            break
        match = _DIRECTIVE.match(line)
        if match is None:
            continue
        setting = _TRANSACTION_SETTING.match(match["body"])
        value = setting["value"].lower() if setting else ""
        if value not in ("true", "false"):
            raise errors.InvalidSource(
                f"{sql_file.name} line {number}: unknown Lockstep setting "
                f"{match['body']!r}; the one setting is {DIRECTIVE_EXAMPLE} (or =true)"
            )
        found = value == "true"
    return found


def plan_file(
    sql_file: sqlfiles.SqlFile, dialect: Dialect, server_major: int | None = None
) -> FilePlan:
    """Decide how ``sql_file`` runs on ``dialect``; refuse what cannot run truthfully."""
    statements = sql_file.statements(dialect)
    # Each statement's words, read once: a 50,000-statement file read them four times (issue 21).
    heads = [words(statement) for statement in statements]
    _refuse_psql_only(sql_file, statements, heads)
    wanted = transaction_directive(sql_file)
    if dialect == "mysql":
        _refuse_transaction_control(sql_file, statements, heads, dialect)
        return FilePlan(
            sql_file.name,
            False,
            tuple(statements),
            "MySQL/MariaDB commit DDL statement by statement",
        )
    why_outside = [_outside_transaction_only(w, dialect, server_major) for w in heads]
    outside = [(s, why) for s, why in zip(statements, why_outside, strict=True) if why]
    if wanted is False or (wanted is None and outside and len(outside) == len(statements)):
        _refuse_transaction_control(sql_file, statements, heads, dialect)
        why = (
            f"its header says {DIRECTIVE_EXAMPLE}"
            if wanted is False
            else f"it holds only statements that cannot run in a transaction ({outside[0][1]})"
        )
        return FilePlan(sql_file.name, False, tuple(statements), why)
    if outside:
        statement, kind = outside[0]
        inside = [s for s, why in zip(statements, why_outside, strict=True) if not why]
        reason = (
            "its header asks for one transaction (lockstep:transaction=true)"
            if wanted
            else f"line {inside[0].line} ({inside[0].shortened(60)}) is an ordinary statement "
            f"that Lockstep would run in one"
        )
        raise errors.InvalidSource(
            f"{sql_file.name}: line {statement.line} ({kind}) cannot run inside a transaction, "
            f"and {reason}. Move the statement(s) that cannot run in a transaction to a file "
            f"of their own (it then runs without a transaction), or put {DIRECTIVE_EXAMPLE} on "
            f"the file's first line to run every statement on its own, accepting that a "
            f"failure part-way leaves the statements before it applied"
        )
    body = _unwrap(sql_file, statements, heads)
    return FilePlan(sql_file.name, True, tuple(body), "Lockstep runs the file in one transaction")


def _controls(statements: list[Statement], heads: list[list[str]]) -> list[tuple[Statement, str]]:
    """The statements that are transaction control, with what they are."""
    found = ((s, _transaction_control(w[:3])) for s, w in zip(statements, heads, strict=True))
    return [(s, kind) for s, kind in found if kind]


def _unwrap(
    sql_file: sqlfiles.SqlFile, statements: list[Statement], heads: list[list[str]]
) -> list[Statement]:
    """Drop a BEGIN ... COMMIT wrapping the whole file: it is the transaction Lockstep opens."""
    controls = _controls(statements, heads)
    if not controls:
        return statements
    if (
        len(controls) == 2
        and statements[0] is controls[0][0]
        and statements[-1] is controls[1][0]
        and heads[0][0] in _STARTS
        and heads[-1][0] in _ENDS
    ):
        return statements[1:-1]
    _refuse_transaction_control(sql_file, statements, heads, "postgresql")
    return statements


def _refuse_transaction_control(
    sql_file: sqlfiles.SqlFile,
    statements: list[Statement],
    heads: list[list[str]],
    dialect: Dialect,
) -> None:
    controls = _controls(statements, heads)
    if not controls:
        return
    found = ", ".join(f"{kind} at line {s.line}" for s, kind in controls)
    if dialect == "mysql":
        why = (
            "MySQL/MariaDB commit every DDL statement on their own, so Lockstep runs and records "
            "the file statement by statement, and a transaction in the file would not hold "
            "what it promises"
        )
        fix = "Remove those lines"
    else:
        why = (
            "Lockstep runs each file in one transaction and records it in that same transaction: "
            "a COMMIT in the file would make part of it permanent before Lockstep records it, and "
            "a ROLLBACK would undo the file while Lockstep records it as applied"
        )
        fix = (
            "Remove those lines (a file wrapped as a whole in BEGIN; ... COMMIT; is accepted: "
            "that is the transaction Lockstep opens anyway), or split the file where it commits"
        )
    raise errors.InvalidSource(
        f"{sql_file.name}: transaction control in a migration file ({found}) is refused: "
        f"{why}. {fix}. Nothing was run."
    )


def _refuse_psql_only(
    sql_file: sqlfiles.SqlFile, statements: list[Statement], heads: list[list[str]]
) -> None:
    for statement, w in zip(statements, heads, strict=True):
        if statement.text.startswith("\\"):
            raise errors.InvalidSource(
                f"{sql_file.name} line {statement.line}: {statement.text.splitlines()[0][:60]} "
                f"is a psql "
                f"command, not SQL; Lockstep sends SQL statements to the server itself. Remove "
                f"it (or write its effect as SQL). Nothing was run."
            )
        if w[:1] == ["COPY"] and "FROM" in w and "STDIN" in w[w.index("FROM") :]:
            raise errors.InvalidSource(
                f"{sql_file.name} line {statement.line}: COPY ... FROM stdin reads its rows from "
                f"psql's input, which Lockstep does not have; write the rows as INSERT "
                f"statements (pg_dump --inserts does) and run again. Nothing was run."
            )


def outside_statements_in_transaction(
    name: str, text: str, dialect: Dialect
) -> list[tuple[Statement, str]]:
    """Statements that cannot run in a transaction, in a file that would run in one.

    For the plan's classifier: such a file is refused when the run starts (or fails on the
    server), so the plan says so first. Empty for a file that runs without a transaction.
    """
    sql_file = sqlfiles.SqlFile(Path(name), "V", "0", "", "", text)
    try:
        wanted = transaction_directive(sql_file)
    except errors.InvalidSource:
        wanted = None
    statements = sql_file.statements(dialect)
    outside = [(s, why) for s in statements if (why := outside_transaction_only(s, dialect))]
    if wanted is False or (wanted is None and len(outside) == len(statements)):
        return []
    return outside
