"""Split a PostgreSQL script into parsed statements with pglast, and name each one's kind.

The script is parsed whole; pglast gives each statement's offset and length, so the
statement's first line is exact.  When the script does not parse, it is split with
PostgreSQL's scanner instead and each statement is parsed on its own, so that one bad
statement becomes a ``parse-error`` finding and the others are still classified.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from pglast import ast
from pglast.enums import ObjectType, TransactionStmtKind
from pglast.parser import ParseError, parse_sql, scan, split

from lockstep.classify import postgres_fastast

_COMMENT_TOKENS: Final = frozenset({"SQL_COMMENT", "C_COMMENT"})
_KINDS: Final[dict[type[ast.Node], str]] = {
    ast.CreateStmt: "CREATE TABLE",
    ast.IndexStmt: "CREATE INDEX",
    ast.ViewStmt: "CREATE VIEW",
    ast.CreateEnumStmt: "CREATE TYPE",
    ast.CompositeTypeStmt: "CREATE TYPE",
    ast.AlterEnumStmt: "ALTER TYPE",
    ast.CreateSeqStmt: "CREATE SEQUENCE",
    ast.AlterSeqStmt: "ALTER SEQUENCE",
    ast.CreateTrigStmt: "CREATE TRIGGER",
    ast.CreatedbStmt: "CREATE DATABASE",
    ast.DropdbStmt: "DROP DATABASE",
    ast.VariableSetStmt: "SET",
}
_TRANSACTION_KINDS: Final = {
    TransactionStmtKind.TRANS_STMT_BEGIN: "BEGIN",
    TransactionStmtKind.TRANS_STMT_START: "BEGIN",
    TransactionStmtKind.TRANS_STMT_COMMIT: "COMMIT",
    TransactionStmtKind.TRANS_STMT_ROLLBACK: "ROLLBACK",
}


@dataclass(frozen=True)
class Piece:
    """One statement of the script: parsed (``node``) or not (``error``)."""

    start: int
    end: int
    node: ast.Node | None
    error: str = ""


def pieces(sql: str) -> list[Piece]:
    try:
        raw_statements = postgres_fastast.parse(sql)
    except ParseError:
        return _pieces_one_by_one(sql)
    return [_piece(sql, raw, 0, len(sql)) for raw in raw_statements]


def _pieces_one_by_one(sql: str) -> list[Piece]:
    """Split with the scanner (no parser) and parse each statement on its own."""
    try:
        slices = split(sql, with_parser=False, only_slices=True)
    except ParseError as error:  # the scanner failed too: the whole script is unreadable
        start = len(sql) - len(sql.lstrip())
        return [Piece(start, len(sql), None, _error_text(error))]
    pieces: list[Piece] = []
    for part in slices:
        pieces.extend(_parse_part(sql, part.start or 0, part.stop or len(sql)))
    return pieces


def _parse_part(sql: str, start: int, stop: int) -> list[Piece]:
    text = sql[start:stop]
    try:
        raw_statements = parse_sql(text)
    except ParseError as error:
        return [Piece(_first_token(sql, start, stop), stop, None, _error_text(error))]
    return [_piece(sql, raw, start, stop) for raw in raw_statements]


def _piece(sql: str, raw: ast.RawStmt, base: int, limit: int) -> Piece:
    """The statement's span in ``sql``; ``raw`` offsets count from ``base``."""
    start = base + (raw.stmt_location or 0)
    end = start + raw.stmt_len if raw.stmt_len else limit
    assert raw.stmt is not None
    return Piece(_first_token(sql, start, end), end, raw.stmt)


def _first_token(sql: str, start: int, end: int) -> int:
    """Offset of the first token at or after ``start`` that is not a comment."""
    try:
        tokens = scan(sql[start:end])
    except ParseError:
        return start + len(sql[start:end]) - len(sql[start:end].lstrip())
    for token in tokens:
        if token.name not in _COMMENT_TOKENS:
            return start + token.start
    return start


def _error_text(error: ParseError) -> str:
    return str(error.args[0]) if error.args else str(error)


def statement_kind(node: ast.Node) -> str:
    """The statement's kind for the summary, e.g. ``ALTER TABLE`` or ``CREATE INDEX``."""
    match node:
        case ast.TransactionStmt(kind=kind) if kind in _TRANSACTION_KINDS:
            return _TRANSACTION_KINDS[kind]
        case ast.AlterTableStmt(objtype=objtype) if objtype is not None:
            return f"ALTER {_object_word(objtype)}"
        case ast.DropStmt(removeType=remove_type) if remove_type is not None:
            return f"DROP {_object_word(remove_type)}"
        case ast.RenameStmt():
            return f"ALTER {_object_word(_renamed_object(node))}"
        case ast.CreateTableAsStmt(objtype=ObjectType.OBJECT_MATVIEW):
            return "CREATE MATERIALIZED VIEW"
        case ast.CreateTableAsStmt():
            return "CREATE TABLE"
    return _KINDS.get(type(node)) or _words_of_class(type(node).__name__)


def _renamed_object(node: ast.RenameStmt) -> ObjectType:
    """What ``ALTER ... RENAME`` alters: the table for a column, else the object itself."""
    child_objects = {ObjectType.OBJECT_COLUMN, ObjectType.OBJECT_TABCONSTRAINT}
    if node.renameType in child_objects and node.relationType is not None:
        return node.relationType
    return node.renameType or ObjectType.OBJECT_TABLE


def _object_word(object_type: ObjectType) -> str:
    word = object_type.name.removeprefix("OBJECT_")
    return "MATERIALIZED VIEW" if word == "MATVIEW" else word.replace("_", " ")


def _words_of_class(name: str) -> str:
    """``CreateExtensionStmt`` → ``CREATE EXTENSION``."""
    return " ".join(re.findall(r"[A-Z][a-z]*", name.removesuffix("Stmt"))).upper()


def uncommitted_begin(pieces: list[Piece]) -> int:
    """The index of a ``BEGIN`` no later ``COMMIT``/``ROLLBACK`` ends, or -1."""
    open_at = -1
    for index, piece in enumerate(pieces):
        if isinstance(piece.node, ast.TransactionStmt):
            kind = _TRANSACTION_KINDS.get(piece.node.kind) if piece.node.kind is not None else None
            if kind == "BEGIN":
                open_at = index
            elif kind in ("COMMIT", "ROLLBACK"):
                open_at = -1
    return open_at
