"""Classify PostgreSQL scripts with pglast, PostgreSQL's own parser.

The script is parsed whole; pglast gives each statement's offset and length, so the
statement's first line is exact.  When the script does not parse, it is split with
PostgreSQL's scanner instead and each statement is parsed on its own, so that one bad
statement becomes a ``parse-error`` finding and the others are still classified.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Final

from pglast import ast
from pglast.enums import (
    AlterTableType,
    ConstrType,
    DropBehavior,
    ObjectType,
    TransactionStmtKind,
)
from pglast.parser import ParseError, parse_sql, scan, split

from lockstep.classify import rules
from lockstep.classify.coltypes import ColumnType, compare
from lockstep.classify.plan import UNPARSED_KIND, Classified, Column, Issue, PlanState

_COMMENT_TOKENS: Final = frozenset({"SQL_COMMENT", "C_COMMENT"})
_TYPE_NAMES: Final = {
    "int2": "smallint",
    "int4": "int",
    "integer": "int",
    "int8": "bigint",
    "smallserial": "smallint",
    "serial2": "smallint",
    "serial": "int",
    "serial4": "int",
    "bigserial": "bigint",
    "serial8": "bigint",
    "bpchar": "char",
    "numeric": "decimal",
    "float4": "float",
    "float8": "double",
    "bool": "boolean",
}
_SERIAL_TYPES: Final = frozenset(
    {"smallserial", "serial2", "serial", "serial4", "bigserial", "serial8"}
)
_VALUE_CONSTRAINTS: Final = frozenset(
    {ConstrType.CONSTR_DEFAULT, ConstrType.CONSTR_IDENTITY, ConstrType.CONSTR_GENERATED}
)
_NOT_NULL_CONSTRAINTS: Final = frozenset({ConstrType.CONSTR_NOTNULL, ConstrType.CONSTR_PRIMARY})
_UNIQUE_CONSTRAINTS: Final = {
    ConstrType.CONSTR_UNIQUE: "a unique constraint",
    ConstrType.CONSTR_PRIMARY: "a primary key",
    ConstrType.CONSTR_EXCLUSION: "an exclusion constraint",
}
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
class _Piece:
    """One statement of the script: parsed (``node``) or not (``error``)."""

    start: int
    end: int
    node: ast.Node | None
    error: str = ""


def read_script(sql: str, state: PlanState) -> Iterator[Classified]:
    """Classify the script's statements in order, updating ``state`` as they go."""
    for piece in _pieces(sql):
        if piece.node is None:
            issues = [rules.parse_error(piece.error)]
            yield Classified(UNPARSED_KIND, piece.start, piece.end, tuple(issues))
        else:
            kind = statement_kind(piece.node)
            yield Classified(kind, piece.start, piece.end, tuple(_issues(piece.node, state)))


# --------------------------------------------------------------------------- splitting


def _pieces(sql: str) -> list[_Piece]:
    try:
        raw_statements = parse_sql(sql)
    except ParseError:
        return _pieces_one_by_one(sql)
    return [_piece(sql, raw, 0, len(sql)) for raw in raw_statements]


def _pieces_one_by_one(sql: str) -> list[_Piece]:
    """Split with the scanner (no parser) and parse each statement on its own."""
    try:
        slices = split(sql, with_parser=False, only_slices=True)
    except ParseError as error:  # the scanner failed too: the whole script is unreadable
        start = len(sql) - len(sql.lstrip())
        return [_Piece(start, len(sql), None, _error_text(error))]
    pieces: list[_Piece] = []
    for part in slices:
        pieces.extend(_parse_part(sql, part.start or 0, part.stop or len(sql)))
    return pieces


def _parse_part(sql: str, start: int, stop: int) -> list[_Piece]:
    text = sql[start:stop]
    try:
        raw_statements = parse_sql(text)
    except ParseError as error:
        return [_Piece(_first_token(sql, start, stop), stop, None, _error_text(error))]
    return [_piece(sql, raw, start, stop) for raw in raw_statements]


def _piece(sql: str, raw: ast.RawStmt, base: int, limit: int) -> _Piece:
    """The statement's span in ``sql``; ``raw`` offsets count from ``base``."""
    start = base + (raw.stmt_location or 0)
    end = start + raw.stmt_len if raw.stmt_len else limit
    assert raw.stmt is not None
    return _Piece(_first_token(sql, start, end), end, raw.stmt)


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


# --------------------------------------------------------------------------- statement kinds


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


# --------------------------------------------------------------------------- rules


def _issues(node: ast.Node, state: PlanState) -> list[Issue]:
    match node:
        case ast.CreateStmt():
            return _create_table(node, state)
        case ast.CreateTableAsStmt():
            return _create_table_as(node, state)
        case ast.AlterTableStmt():
            return _alter_table(node, state)
        case ast.IndexStmt():
            return _create_index(node, state)
        case ast.DropStmt():
            return _drop(node, state)
        case ast.DropdbStmt():
            return [rules.drop_container("database", [node.dbname or ""])]
        case ast.TruncateStmt():
            return _truncate(node, state)
        case ast.DeleteStmt() | ast.UpdateStmt():
            return _without_where(node, state)
        case ast.RenameStmt():
            return _rename(node, state)
        case ast.AlterEnumStmt():
            return _alter_enum(node)
    return []


def _create_table(node: ast.CreateStmt, state: PlanState) -> list[Issue]:
    if node.relation is not None:
        definitions = [element for element in node.tableElts or () if _is_column(element)]
        columns = {column.colname or "": _column(column) for column in definitions}
        table = _relation_name(node.relation)
        state.create_table(table, columns, if_not_exists=bool(node.if_not_exists))
    return []


def _create_table_as(node: ast.CreateTableAsStmt, state: PlanState) -> list[Issue]:
    into = node.into
    if into is not None and into.rel is not None:
        table = _relation_name(into.rel)
        state.create_table(table, {}, if_not_exists=bool(node.if_not_exists))
    return []


def _alter_table(node: ast.AlterTableStmt, state: PlanState) -> list[Issue]:
    if node.relation is None or node.objtype != ObjectType.OBJECT_TABLE:
        return []
    table = _relation_name(node.relation)
    exempt = state.exempt(table)
    issues = [issue for command in node.cmds or () for issue in _command(table, command, state)]
    return [] if exempt else issues


def _command(table: str, command: ast.AlterTableCmd, state: PlanState) -> list[Issue]:
    match command.subtype:
        case AlterTableType.AT_AddColumn if isinstance(command.def_, ast.ColumnDef):
            return _add_column(table, command.def_, state)
        case AlterTableType.AT_DropColumn:
            state.drop_column(table, command.name or "")
            return [rules.drop_column(table, command.name or "")]
        case AlterTableType.AT_AlterColumnType if isinstance(command.def_, ast.ColumnDef):
            return _alter_column_type(table, command.name or "", command.def_, state)
        case AlterTableType.AT_SetNotNull:
            return _set_not_null(table, command.name or "", state)
        case AlterTableType.AT_AddConstraint if isinstance(command.def_, ast.Constraint):
            return _add_constraint(table, command.def_)
    return []


def _add_column(table: str, definition: ast.ColumnDef, state: PlanState) -> list[Issue]:
    column = _column(definition)
    name = definition.colname or ""
    state.set_column(table, name, column)
    issues: list[Issue] = []
    if not column.nullable and not _has_value(definition):
        issues.append(rules.add_not_null_without_default(table, name))
    unique = [kind for kind in _constraint_types(definition) if kind in _UNIQUE_CONSTRAINTS]
    issues.extend(rules.add_unique_constraint(table, _UNIQUE_CONSTRAINTS[kind]) for kind in unique)
    return issues


def _alter_column_type(
    table: str, name: str, definition: ast.ColumnDef, state: PlanState
) -> list[Issue]:
    if definition.typeName is None:
        return []
    known = state.column(table, name)
    old = known.type if known is not None else None
    new = _column_type(definition.typeName)
    state.set_column(table, name, Column(new, known.nullable if known else True))
    change = compare(old, new)
    if definition.raw_default is not None and change != "narrowing":
        change = "conversion"  # USING rewrites every value
    if change == "same" or (change == "widening" and _is_text(new)):
        return []  # longer varchar or text: no rewrite, no data at risk
    return [rules.alter_column_type(table, name, old, new, change)]


def _set_not_null(table: str, name: str, state: PlanState) -> list[Issue]:
    known = state.column(table, name)
    if known is not None:
        state.set_column(table, name, Column(known.type, nullable=False))
    return [rules.set_not_null(table, name, "postgresql")]


def _add_constraint(table: str, constraint: ast.Constraint) -> list[Issue]:
    kind = constraint.contype
    if kind in _UNIQUE_CONSTRAINTS and not constraint.indexname:
        return [rules.add_unique_constraint(table, _UNIQUE_CONSTRAINTS[kind])]
    if constraint.skip_validation:
        return []
    if kind == ConstrType.CONSTR_FOREIGN:
        return [rules.add_foreign_key_validates(table, "postgresql")]
    if kind == ConstrType.CONSTR_CHECK:
        return [rules.add_check_constraint(table, "postgresql")]
    return []


def _create_index(node: ast.IndexStmt, state: PlanState) -> list[Issue]:
    if node.relation is None:
        return []
    table = _relation_name(node.relation)
    if state.exempt(table):
        return []
    issues: list[Issue] = []
    if not node.concurrent:
        issues.append(rules.create_index_locks_writes(table, "postgresql"))
    if node.unique:
        issues.append(rules.add_unique_constraint(table, "a unique index"))
    return issues


def _drop(node: ast.DropStmt, state: PlanState) -> list[Issue]:
    names = [_object_name(item) for item in node.objects or ()]
    match node.removeType:
        case ObjectType.OBJECT_TABLE:
            existing = state.existing(names)
            for name in names:
                state.drop_table(name)
            return [rules.drop_table(existing)] if existing else []
        case ObjectType.OBJECT_SCHEMA:
            return [rules.drop_container("schema", names)]
        case ObjectType.OBJECT_TYPE | ObjectType.OBJECT_DOMAIN:
            return [rules.drop_type(names, node.behavior == DropBehavior.DROP_CASCADE)]
    return []


def _truncate(node: ast.TruncateStmt, state: PlanState) -> list[Issue]:
    tables = [_relation_name(relation) for relation in node.relations or ()]
    existing = state.existing(tables)
    return [rules.truncate(existing)] if existing else []


def _without_where(node: ast.DeleteStmt | ast.UpdateStmt, state: PlanState) -> list[Issue]:
    if node.whereClause is not None or node.relation is None:
        return []
    table = _relation_name(node.relation)
    if state.exempt(table):
        return []
    if isinstance(node, ast.DeleteStmt):
        return [rules.delete_without_where(table)]
    return [rules.update_without_where(table)]


def _rename(node: ast.RenameStmt, state: PlanState) -> list[Issue]:
    if node.relation is None:
        return []
    table = _relation_name(node.relation)
    exempt = state.exempt(table)
    new_name = node.newname or ""
    issues: list[Issue] = []
    if node.renameType == ObjectType.OBJECT_TABLE:
        state.rename_table(table, new_name)
        issues.append(rules.rename_table(table, new_name))
    elif node.renameType == ObjectType.OBJECT_COLUMN:
        state.rename_column(table, node.subname or "", new_name)
        issues.append(rules.rename_column(table, node.subname or "", new_name))
    return [] if exempt else issues


def _alter_enum(node: ast.AlterEnumStmt) -> list[Issue]:
    if node.oldVal is None:
        return []  # ADD VALUE: old values stay valid
    type_name = _object_name(node.typeName or ())
    return [rules.enum_value_rename(type_name, node.oldVal, node.newVal or "")]


# --------------------------------------------------------------------------- AST helpers


def _relation_name(relation: ast.RangeVar) -> str:
    parts = (relation.schemaname, relation.relname)
    return ".".join(part for part in parts if part)


def _object_name(item: object) -> str:
    """A dotted name from a DROP object: a String, a list of Strings or a TypeName."""
    if isinstance(item, ast.String):
        return item.sval or ""
    if isinstance(item, ast.TypeName):
        return _object_name(item.names or ())
    if isinstance(item, tuple | list):
        return ".".join(_object_name(part) for part in item)
    return ""


def _is_column(element: object) -> bool:
    return isinstance(element, ast.ColumnDef)


def _constraint_types(definition: ast.ColumnDef) -> list[ConstrType]:
    constraints = definition.constraints or ()
    return [c.contype for c in constraints if isinstance(c, ast.Constraint) and c.contype]


def _column(definition: ast.ColumnDef) -> Column:
    kinds = set(_constraint_types(definition))
    not_null = bool(definition.is_not_null) or bool(kinds & _NOT_NULL_CONSTRAINTS)
    kind = _column_type(definition.typeName) if definition.typeName else ColumnType("unknown")
    return Column(kind, nullable=not not_null)


def _has_value(definition: ast.ColumnDef) -> bool:
    """True when existing rows get a value: a DEFAULT, identity, generated or serial."""
    if definition.raw_default is not None or _base_type_name(definition) in _SERIAL_TYPES:
        return True
    return bool(set(_constraint_types(definition)) & _VALUE_CONSTRAINTS)


def _base_type_name(definition: ast.ColumnDef) -> str:
    names = definition.typeName.names if definition.typeName else None
    return _object_name(names[-1]).lower() if names else ""


def _column_type(type_name: ast.TypeName) -> ColumnType:
    names = type_name.names or ()
    base = _object_name(names[-1]).lower() if names else "unknown"
    name = _TYPE_NAMES.get(base, base) + ("[]" if type_name.arrayBounds else "")
    return ColumnType(name, _type_params(type_name.typmods or ()))


def _type_params(modifiers: Sequence[object]) -> tuple[int, ...]:
    values = [
        modifier.val.ival
        for modifier in modifiers
        if isinstance(modifier, ast.A_Const) and isinstance(modifier.val, ast.Integer)
    ]
    return tuple(value for value in values if value is not None)


def _is_text(kind: ColumnType) -> bool:
    return kind.name in {"varchar", "text"}
