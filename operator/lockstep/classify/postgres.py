"""Classify PostgreSQL scripts with pglast, PostgreSQL's own parser: the rules per statement.

:mod:`lockstep.classify.postgres_statements` splits and parses the script; each parsed
statement's findings come from here, reading columns and names through
:mod:`lockstep.classify.postgres_columns`.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Final

from pglast import ast
from pglast.enums import AlterTableType, ConstrType, ObjectType

from lockstep.classify import (
    postgres_columns,
    postgres_objects,
    postgres_statements,
    rules,
    rules_locks,
)
from lockstep.classify.coltypes import compare
from lockstep.classify.plan import UNPARSED_KIND, Classified, Column, Issue, PlanState, table_key

_UNIQUE_CONSTRAINTS: Final = {
    ConstrType.CONSTR_UNIQUE: "a unique constraint",
    ConstrType.CONSTR_PRIMARY: "a primary key",
    ConstrType.CONSTR_EXCLUSION: "an exclusion constraint",
}


def read_script(sql: str, state: PlanState, *, own_file: bool = True) -> Iterator[Classified]:
    """Classify the script's statements in order, updating ``state`` as they go.

    ``own_file``: a Lockstep V/U file, where a ``BEGIN`` without ``COMMIT`` is a finding; a
    tool's rendered SQL (Alembic's offline mode) may open in one piece and commit in another.
    """
    pieces = postgres_statements.pieces(sql)
    uncommitted = postgres_statements.uncommitted_begin(pieces) if own_file else -1
    for index, piece in enumerate(pieces):
        if piece.node is None:
            issues = [rules.parse_error(piece.error)]
            yield Classified(UNPARSED_KIND, piece.start, piece.end, tuple(issues))
            continue
        kind = postgres_statements.statement_kind(piece.node)
        found = _issues(piece.node, state)
        if index == uncommitted:
            found.append(rules.uncommitted_transaction())
        yield Classified(kind, piece.start, piece.end, tuple(found))


def _issues(node: ast.Node, state: PlanState) -> list[Issue]:
    match node:
        case ast.CreateStmt():
            return _create_table(node, state)
        case ast.CreateTableAsStmt():
            return _create_table_as(node, state)
        case ast.ViewStmt() | ast.CreateSeqStmt() | ast.CreateEnumStmt() | ast.CreateDomainStmt():
            state.create_object(postgres_objects.created_name(node))
            return []
        case ast.AlterTableStmt():
            return _alter_table(node, state)
        case ast.IndexStmt():
            return _create_index(node, state)
        case ast.DropStmt():
            return postgres_objects.drop(node, state)
        case ast.DropdbStmt():
            return [rules.drop_container("database", [node.dbname or ""])]
        case ast.TruncateStmt():
            return _truncate(node, state)
        case ast.UpdateStmt():
            return postgres_objects.duplicate_assignment(node) + _without_where(node, state)
        case ast.DeleteStmt():
            return _without_where(node, state)
        case ast.RenameStmt():
            return postgres_objects.rename(node, state)
        case ast.AlterObjectSchemaStmt():
            return postgres_objects.set_schema(node, state)
        case ast.AlterEnumStmt():
            return _alter_enum(node)
    return _maintenance_and_code(node, state)


def _maintenance_and_code(node: ast.Node, state: PlanState) -> list[Issue]:
    match node:
        case ast.VacuumStmt():
            return postgres_objects.vacuum(node, state)
        case ast.ClusterStmt():
            return postgres_objects.cluster(node, state)
        case ast.ReindexStmt():
            return postgres_objects.reindex(node, state)
        case ast.RefreshMatViewStmt():
            return postgres_objects.refresh(node, state)
        case ast.LockStmt():
            return postgres_objects.lock(node, state)
        case ast.AlterDomainStmt():
            return postgres_objects.alter_domain(node)
    return postgres_objects.procedural(node, state)


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
        state.create_object(table)
    return []


def _alter_table(node: ast.AlterTableStmt, state: PlanState) -> list[Issue]:
    if node.relation is None or node.objtype != ObjectType.OBJECT_TABLE:
        return []
    table = postgres_columns.relation_name(node.relation)
    exempt = state.exempt(table)
    commands = node.cmds or ()
    issues = [issue for command in commands for issue in _command(table, command, state)]
    issues.extend(_repeated_columns(commands))
    return [] if exempt else issues


def _repeated_columns(commands: Sequence[ast.AlterTableCmd]) -> list[Issue]:
    added = Counter(
        command.def_.colname
        for command in commands
        if command.subtype == AlterTableType.AT_AddColumn
        and isinstance(command.def_, ast.ColumnDef)
    )
    repeated = sorted(name or "" for name, count in added.items() if count > 1)
    return [rules.always_fails(f"column {', '.join(repeated)} is added twice")] if repeated else []


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
            return _add_constraint(table, command.def_, state)
        case AlterTableType.AT_ValidateConstraint:
            return _validate(table, command.name or "", state)
        case AlterTableType.AT_SetLogged | AlterTableType.AT_SetUnLogged:
            what = (
                "SET LOGGED" if command.subtype == AlterTableType.AT_SetLogged else "SET UNLOGGED"
            )
            return [rules_locks.table_rewrite(what, table)]
    return _partition_command(table, command, state)


def _partition_command(table: str, command: ast.AlterTableCmd, state: PlanState) -> list[Issue]:
    partition = command.def_
    if not isinstance(partition, ast.PartitionCmd) or partition.name is None:
        return []
    name = postgres_columns.relation_name(partition.name)
    if command.subtype == AlterTableType.AT_DetachPartition and not partition.concurrent:
        return [
            rules_locks.blocking_without_concurrently(
                f"DETACH PARTITION {name} of", table, "reads and writes of the partitioned table"
            )
        ]
    if command.subtype == AlterTableType.AT_AttachPartition and not state.exempt(name):
        return [
            rules_locks.scan_under_lock(
                f"ATTACH PARTITION {name}",
                name,
                "Add a CHECK constraint matching the partition bounds first (NOT VALID, then "
                "VALIDATE in a later file), so the attach can skip the scan.",
            )
        ]
    return []


def _add_column(table: str, definition: ast.ColumnDef, state: PlanState) -> list[Issue]:
    column = postgres_columns.column(definition)
    name = definition.colname or ""
    state.set_column(table, name, column)
    issues: list[Issue] = []
    if not column.nullable and not postgres_columns.has_value(definition):
        issues.append(rules.add_not_null_without_default(table, name))
    rewrite = postgres_columns.rewriting_value(definition)
    if rewrite:
        issues.append(rules_locks.add_column_rewrites_table(table, name, rewrite))
    issues.extend(_inline_checks(table, definition))
    unique = [
        kind
        for kind in postgres_columns.constraint_types(definition)
        if kind in _UNIQUE_CONSTRAINTS
    ]
    issues.extend(rules.add_unique_constraint(table, _UNIQUE_CONSTRAINTS[kind]) for kind in unique)
    return issues


def _inline_checks(table: str, definition: ast.ColumnDef) -> list[Issue]:
    """Inline CHECKs are verified on every row; an inline FK too once a DEFAULT fills it."""
    kinds = set(postgres_columns.constraint_types(definition))
    issues = []
    if ConstrType.CONSTR_CHECK in kinds:
        issues.append(rules.add_check_constraint(table, "postgresql"))
    if ConstrType.CONSTR_FOREIGN in kinds and postgres_columns.has_non_null_default(definition):
        issues.append(rules.add_foreign_key_validates(table, "postgresql"))
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
    checks = state.checks_on(table, name)
    if change == "same" or (change == "widening" and postgres_columns.is_text(new)):
        # longer varchar or text: no rewrite, no data at risk; CHECKs on it are re-read
        return [rules_locks.type_change_rechecks(table, name, checks)] if checks else []
    if definition.raw_default is None and postgres_columns.is_decimal_widening(old, new):
        return [rules_locks.type_change_rechecks(table, name, checks)] if checks else []
    return [rules.alter_column_type(table, name, old, new, change)]


def _set_not_null(table: str, name: str, state: PlanState) -> list[Issue]:
    known = state.column(table, name)
    if known is not None:
        state.set_column(table, name, Column(known.type, nullable=False))
    state.checks_on(table, name)  # asks the database for the table's CHECKs
    if (table_key(table), name.lower()) in state.not_null_proven:
        return []  # a validated CHECK (name IS NOT NULL) lets PostgreSQL 12+ skip the scan
    return [rules.set_not_null(table, name, "postgresql")]


def _validate(table: str, constraint: str, state: PlanState) -> list[Issue]:
    proven = state.not_null_checks.get(constraint.lower())
    if proven is not None:
        state.not_null_proven.add(proven)
    if constraint.lower() in state.not_valid_in_file:
        return [rules_locks.validate_in_same_transaction(table, constraint)]
    return []


def _add_constraint(table: str, constraint: ast.Constraint, state: PlanState) -> list[Issue]:
    kind = constraint.contype
    if kind in _UNIQUE_CONSTRAINTS and not constraint.indexname:
        columns = postgres_columns.key_columns(constraint)
        return [rules.add_unique_constraint(table, _UNIQUE_CONSTRAINTS[kind], columns)]
    name = (constraint.conname or "").lower()
    column = postgres_columns.not_null_check_column(constraint.raw_expr)
    if kind == ConstrType.CONSTR_CHECK and column and name:
        state.not_null_checks[name] = (table_key(table), column)
        if not constraint.skip_validation:
            state.not_null_proven.add((table_key(table), column))
    if constraint.skip_validation:
        state.not_valid_in_file.add(name)
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
    if node.idxname:
        state.create_object(node.idxname)
    if state.exempt(table):
        return []
    issues: list[Issue] = []
    if not node.concurrent:
        issues.append(rules.create_index_locks_writes(table, "postgresql"))
    if node.unique:
        columns = postgres_columns.index_columns(node)
        unique = rules.add_unique_constraint(table, "a unique index", columns)
        # Built CONCURRENTLY, a duplicate only fails it (leaving an invalid index): shown,
        # and breaking once the live schema finds duplicates (lockstep.classify.live).
        issues.append(dataclasses.replace(unique, severity="info") if node.concurrent else unique)
    return issues


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


def _alter_enum(node: ast.AlterEnumStmt) -> list[Issue]:
    if node.oldVal is None:
        return []  # ADD VALUE: old values stay valid
    type_name = postgres_columns.object_name(node.typeName or ())
    return [rules.enum_value_rename(type_name, node.oldVal, node.newVal or "")]
