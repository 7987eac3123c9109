"""Classify PostgreSQL scripts with pglast, PostgreSQL's own parser: the rules per statement.

:mod:`lockstep.classify.postgres_statements` splits and parses the script; each parsed
statement's findings come from here, reading columns and names through
:mod:`lockstep.classify.postgres_columns`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from pglast import ast
from pglast.enums import AlterTableType, ConstrType, DropBehavior, ObjectType

from lockstep.classify import postgres_columns, postgres_statements, rules
from lockstep.classify.coltypes import compare
from lockstep.classify.plan import UNPARSED_KIND, Classified, Column, Issue, PlanState

_UNIQUE_CONSTRAINTS: Final = {
    ConstrType.CONSTR_UNIQUE: "a unique constraint",
    ConstrType.CONSTR_PRIMARY: "a primary key",
    ConstrType.CONSTR_EXCLUSION: "an exclusion constraint",
}


def read_script(sql: str, state: PlanState) -> Iterator[Classified]:
    """Classify the script's statements in order, updating ``state`` as they go."""
    for piece in postgres_statements.pieces(sql):
        if piece.node is None:
            issues = [rules.parse_error(piece.error)]
            yield Classified(UNPARSED_KIND, piece.start, piece.end, tuple(issues))
        else:
            kind = postgres_statements.statement_kind(piece.node)
            yield Classified(kind, piece.start, piece.end, tuple(_issues(piece.node, state)))


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
        definitions = [
            element for element in node.tableElts or () if postgres_columns.is_column(element)
        ]
        columns = {column.colname or "": postgres_columns.column(column) for column in definitions}
        table = postgres_columns.relation_name(node.relation)
        state.create_table(table, columns, if_not_exists=bool(node.if_not_exists))
    return []


def _create_table_as(node: ast.CreateTableAsStmt, state: PlanState) -> list[Issue]:
    into = node.into
    if into is not None and into.rel is not None:
        table = postgres_columns.relation_name(into.rel)
        state.create_table(table, {}, if_not_exists=bool(node.if_not_exists))
    return []


def _alter_table(node: ast.AlterTableStmt, state: PlanState) -> list[Issue]:
    if node.relation is None or node.objtype != ObjectType.OBJECT_TABLE:
        return []
    table = postgres_columns.relation_name(node.relation)
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
    column = postgres_columns.column(definition)
    name = definition.colname or ""
    state.set_column(table, name, column)
    issues: list[Issue] = []
    if not column.nullable and not postgres_columns.has_value(definition):
        issues.append(rules.add_not_null_without_default(table, name))
    unique = [
        kind
        for kind in postgres_columns.constraint_types(definition)
        if kind in _UNIQUE_CONSTRAINTS
    ]
    issues.extend(rules.add_unique_constraint(table, _UNIQUE_CONSTRAINTS[kind]) for kind in unique)
    return issues


def _alter_column_type(
    table: str, name: str, definition: ast.ColumnDef, state: PlanState
) -> list[Issue]:
    if definition.typeName is None:
        return []
    known = state.column(table, name)
    old = known.type if known is not None else None
    new = postgres_columns.column_type(definition.typeName)
    state.set_column(table, name, Column(new, known.nullable if known else True))
    change = compare(old, new)
    if definition.raw_default is not None and change != "narrowing":
        change = "conversion"  # USING rewrites every value
    if change == "same" or (change == "widening" and postgres_columns.is_text(new)):
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
    table = postgres_columns.relation_name(node.relation)
    if state.exempt(table):
        return []
    issues: list[Issue] = []
    if not node.concurrent:
        issues.append(rules.create_index_locks_writes(table, "postgresql"))
    if node.unique:
        issues.append(rules.add_unique_constraint(table, "a unique index"))
    return issues


def _drop(node: ast.DropStmt, state: PlanState) -> list[Issue]:
    names = [postgres_columns.object_name(item) for item in node.objects or ()]
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
    tables = [postgres_columns.relation_name(relation) for relation in node.relations or ()]
    existing = state.existing(tables)
    return [rules.truncate(existing)] if existing else []


def _without_where(node: ast.DeleteStmt | ast.UpdateStmt, state: PlanState) -> list[Issue]:
    if node.whereClause is not None or node.relation is None:
        return []
    table = postgres_columns.relation_name(node.relation)
    if state.exempt(table):
        return []
    if isinstance(node, ast.DeleteStmt):
        return [rules.delete_without_where(table)]
    return [rules.update_without_where(table)]


def _rename(node: ast.RenameStmt, state: PlanState) -> list[Issue]:
    if node.relation is None:
        return []
    table = postgres_columns.relation_name(node.relation)
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
    type_name = postgres_columns.object_name(node.typeName or ())
    return [rules.enum_value_rename(type_name, node.oldVal, node.newVal or "")]
