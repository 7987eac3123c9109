"""The rules for MySQL/MariaDB and SQLite ``ALTER TABLE``, one action at a time.

Actions run in order and can rename the table mid-statement, so each action sees the
table's name as the previous ones left it; nothing is reported for a table created
earlier in the plan.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from sqlglot import exp

from lockstep.classify import mysql_columns, mysql_statements, rules, rules_locks
from lockstep.classify.coltypes import ColumnType, compare, removed_members
from lockstep.classify.findings import Dialect
from lockstep.classify.plan import Column, Issue, PlanState

_REBUILDING: Final = frozenset({"FULLTEXT", "SPATIAL"})  # their first index rebuilds the table


def alter_table(expression: exp.Alter, state: PlanState, dialect: Dialect) -> list[Issue]:
    table = mysql_columns.table_name(expression.this)
    if str(expression.args.get("kind") or "").upper() != "TABLE" or not table:
        return []
    exempt = state.exempt(table)
    options = _alter_options(expression)
    issues: list[Issue] = []
    first_table = table
    for action in expression.args.get("actions") or []:
        issues.extend(_action(table, action, options, state, dialect))
        table = _renamed_to(action) or table
    locking = mysql_statements.locking_option(options)
    if locking and not any(issue.rule == rules.CREATE_INDEX_LOCKS_WRITES for issue in issues):
        issues.append(rules_locks.alter_locks_writes(first_table, locking))
    return [] if exempt else issues


def _alter_options(expression: exp.Alter) -> dict[str, str]:
    options: dict[str, str] = {}
    for option in expression.args.get("options") or []:
        if isinstance(option, exp.AlgorithmProperty):
            options["ALGORITHM"] = option.name.upper()
        elif isinstance(option, exp.LockProperty):
            options["LOCK"] = option.name.upper()
    return options


def _renamed_to(action: exp.Expr) -> str:
    return mysql_columns.table_name(action.this) if isinstance(action, exp.AlterRename) else ""


def _action(
    table: str,
    action: exp.Expr,
    options: Mapping[str, str],
    state: PlanState,
    dialect: Dialect,
) -> list[Issue]:
    match action:
        case exp.ColumnDef():
            return _add_column(table, action, state, dialect)
        case exp.Drop():
            return _drop_columns(table, action, state)
        case exp.ModifyColumn():
            return _modify_column(table, action, state, dialect)
        case exp.RenameColumn():
            return _rename_column(table, action.this.name, action.args["to"].name, state)
        case exp.AlterRename():
            state.rename_table(table, mysql_columns.table_name(action.this))
            return [rules.rename_table(table, mysql_columns.table_name(action.this))]
        case exp.AddConstraint():
            return _add_constraints(table, action, options, dialect)
    return []


def _add_column(
    table: str, definition: exp.ColumnDef, state: PlanState, dialect: Dialect
) -> list[Issue]:
    column = mysql_columns.column(definition, dialect)
    state.set_column(table, definition.name, column)
    issues: list[Issue] = []
    if not column.nullable and not mysql_columns.has_value(definition):
        issues.append(rules.add_not_null_without_default(table, definition.name))
    copying = mysql_columns.copying_value(definition)
    if copying:
        issues.append(rules_locks.alter_copies_table(table, copying))
    if mysql_columns.find_constraint(definition, exp.PrimaryKeyColumnConstraint):
        issues.append(rules.add_unique_constraint(table, "a primary key"))
    elif mysql_columns.find_constraint(definition, exp.UniqueColumnConstraint):
        issues.append(rules.add_unique_constraint(table))
    return issues


def _drop_columns(table: str, action: exp.Drop, state: PlanState) -> list[Issue]:
    if str(action.args.get("kind") or "").upper() != "COLUMN":
        return []  # an index, key or constraint: no data is lost
    names = [column.name for column in action.args.get("tables") or []]
    for name in names:
        state.drop_column(table, name)
    return [rules.drop_column(table, name) for name in names]


def _modify_column(
    table: str, action: exp.ModifyColumn, state: PlanState, dialect: Dialect
) -> list[Issue]:
    """``MODIFY`` and ``CHANGE`` restate the whole column: name, type and nullability."""
    definition = action.this
    if not isinstance(definition, exp.ColumnDef):
        return []
    renamed_from = action.args.get("rename_from")
    old_name = renamed_from.name if renamed_from is not None else definition.name
    known = state.column(table, old_name)
    issues = []
    if old_name.lower() != definition.name.lower():
        issues.extend(_rename_column(table, old_name, definition.name, state))
    column = mysql_columns.column(definition, dialect)
    issues.extend(_type_change(table, definition.name, known, column.type))
    if column.auto_increment and not (known is not None and known.auto_increment):
        issues.append(rules_locks.alter_copies_table(table, "adding AUTO_INCREMENT"))
    if known is not None and known.nullable and not column.nullable:
        issues.append(rules.set_not_null(table, definition.name, dialect))
    state.set_column(table, definition.name, column)
    return issues


def _type_change(table: str, name: str, known: Column | None, new: ColumnType) -> list[Issue]:
    old = known.type if known is not None else None
    removed = removed_members(old, new)
    if removed:
        return [rules.enum_value_removal(table, name, removed)]
    change = compare(old, new)
    if change == "same" or (change == "widening" and new.name in {"enum", "set"}):
        return []  # appending members changes no stored value
    if change == "widening" and old is not None and old.name == new.name == "varchar":
        if mysql_columns.varchar_bytes(old) <= 255 < mysql_columns.varchar_bytes(new):
            why = "a VARCHAR growing past 255 bytes needs a longer length prefix"
            return [rules_locks.alter_copies_table(table, why)]
        return []  # the same length prefix: changed in place
    return [rules.alter_column_type(table, name, old, new, change)]


def _rename_column(table: str, old: str, new: str, state: PlanState) -> list[Issue]:
    state.rename_column(table, old, new)
    return [rules.rename_column(table, old, new)]


def _add_constraints(
    table: str, action: exp.AddConstraint, options: Mapping[str, str], dialect: Dialect
) -> list[Issue]:
    issues: list[Issue] = []
    for item in action.expressions:
        parts = item.expressions if isinstance(item, exp.Constraint) else [item]
        for part in parts:
            issues.extend(_added_constraint(table, part, options, dialect))
    return issues


def _added_constraint(
    table: str, part: exp.Expr, options: Mapping[str, str], dialect: Dialect
) -> list[Issue]:
    match part:
        case exp.UniqueColumnConstraint():
            schema = part.this
            keys = schema.expressions if isinstance(schema, exp.Schema) else []
            columns = mysql_columns.plain_columns(keys)
            return [rules.add_unique_constraint(table, "a unique constraint", columns)]
        case exp.PrimaryKey() | exp.PrimaryKeyColumnConstraint():
            columns = mysql_columns.plain_columns(part.expressions)
            return [rules.add_unique_constraint(table, "a primary key", columns)]
        case exp.ForeignKey():
            return [rules.add_foreign_key_validates(table, dialect)]
        case exp.CheckColumnConstraint():
            return [rules.add_check_constraint(table, dialect)]
        case exp.IndexColumnConstraint() if str(part.args.get("kind") or "").upper() in _REBUILDING:
            kind = str(part.args.get("kind")).upper()
            return [rules_locks.alter_locks_writes(table, f"a {kind} index (LOCK=SHARED rebuild)")]
        case exp.IndexColumnConstraint():
            locking = mysql_statements.locking_option(options)
            return [rules.create_index_locks_writes(table, dialect, locking)] if locking else []
    return []
