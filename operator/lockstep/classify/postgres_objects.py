"""PostgreSQL statements about objects other than a table's columns: drops, renames,
maintenance (VACUUM FULL, CLUSTER, REINDEX, REFRESH), explicit locks, domains and code.

Every object kind counts, not only tables: dropping or renaming a view, sequence, schema or
function breaks the code that uses it just as surely.  Objects the plan created itself are
exempt, like new tables.  Procedural and dynamic SQL (``DO``, ``CALL``, routine bodies) is
``procedural-sql``: a parser cannot show what it does, so a person must read it.
"""

from __future__ import annotations

from typing import Final

from pglast import ast
from pglast.enums import DropBehavior, ObjectType

from lockstep.classify import postgres_columns, rules, rules_locks
from lockstep.classify.plan import Issue, PlanState

_HARMLESS_DROPS: Final = frozenset({ObjectType.OBJECT_INDEX})  # handled on their own
_RENAMES_NOT_IN_CODE: Final = frozenset(
    {ObjectType.OBJECT_INDEX, ObjectType.OBJECT_TABCONSTRAINT, ObjectType.OBJECT_TRIGGER}
    | {ObjectType.OBJECT_DOMCONSTRAINT, ObjectType.OBJECT_POLICY, ObjectType.OBJECT_RULE}
)


def kind_word(object_type: ObjectType) -> str:
    word = object_type.name.removeprefix("OBJECT_").lower()
    return "materialized view" if word == "matview" else word.replace("_", " ")


def drop(node: ast.DropStmt, state: PlanState) -> list[Issue]:
    names = [postgres_columns.object_name(item) for item in node.objects or ()]
    kind = node.removeType
    if kind == ObjectType.OBJECT_TABLE:
        existing = state.existing(names)
        for name in names:
            state.drop_table(name)
        return [rules.drop_table(existing)] if existing else []
    if kind == ObjectType.OBJECT_SCHEMA:
        return [rules.drop_container("schema", names)]
    old = [name for name in names if not state.is_new_object(name)]
    if not old or kind is None:
        return []
    if kind in (ObjectType.OBJECT_TYPE, ObjectType.OBJECT_DOMAIN):
        return [rules.drop_type(old, node.behavior == DropBehavior.DROP_CASCADE)]
    if kind == ObjectType.OBJECT_INDEX:
        if node.concurrent:
            return []
        return [
            rules_locks.blocking_without_concurrently("DROP INDEX", ", ".join(old), "the table")
        ]
    return [rules.drop_object(kind_word(kind), old)]


def rename(node: ast.RenameStmt, state: PlanState) -> list[Issue]:
    kind = node.renameType
    if kind is None or kind in _RENAMES_NOT_IN_CODE:
        return []
    new_name = node.newname or ""
    if node.relation is not None:
        table = postgres_columns.relation_name(node.relation)
        exempt = state.exempt(table) or state.is_new_object(table)
        if kind == ObjectType.OBJECT_TABLE:
            state.rename_table(table, new_name)
            return [] if exempt else [rules.rename_table(table, new_name)]
        if kind == ObjectType.OBJECT_COLUMN:
            state.rename_column(table, node.subname or "", new_name)
            return [] if exempt else [rules.rename_column(table, node.subname or "", new_name)]
        old = table
    else:
        old = node.subname or postgres_columns.object_name(node.object)
        exempt = state.is_new_object(old)
    if exempt:
        state.create_object(new_name)
        return []
    return [rules.rename_object(kind_word(kind), old, new_name)]


def set_schema(node: ast.AlterObjectSchemaStmt, state: PlanState) -> list[Issue]:
    if node.relation is not None:
        old = postgres_columns.relation_name(node.relation)
    else:
        old = postgres_columns.object_name(node.object)
    if state.exempt(old) or state.is_new_object(old) or node.objectType is None:
        return []
    word = kind_word(node.objectType)
    return [rules.rename_object(word, old, f"{node.newschema}.{old.rsplit('.', 1)[-1]}")]


def vacuum(node: ast.VacuumStmt, state: PlanState) -> list[Issue]:
    options = {option.defname for option in node.options or () if isinstance(option, ast.DefElem)}
    if not node.is_vacuumcmd or "full" not in options:
        return []
    tables = [
        postgres_columns.relation_name(item.relation)
        for item in node.rels or ()
        if isinstance(item, ast.VacuumRelation) and item.relation is not None
    ]
    existing = state.existing(tables)
    if tables and not existing:
        return []
    return [rules_locks.table_rewrite("VACUUM FULL", ", ".join(existing) or "every table")]


def cluster(node: ast.ClusterStmt, state: PlanState) -> list[Issue]:
    table = postgres_columns.relation_name(node.relation) if node.relation else ""
    if table and state.exempt(table):
        return []
    return [rules_locks.table_rewrite("CLUSTER", table or "every clustered table")]


def reindex(node: ast.ReindexStmt, state: PlanState) -> list[Issue]:
    params = {param.defname for param in node.params or () if isinstance(param, ast.DefElem)}
    if "concurrently" in params:
        return []
    name = postgres_columns.relation_name(node.relation) if node.relation else node.name or ""
    if name and (state.exempt(name) or state.is_new_object(name)):
        return []
    return [rules_locks.blocking_without_concurrently("REINDEX of", name, "writes to the table")]


def refresh(node: ast.RefreshMatViewStmt, state: PlanState) -> list[Issue]:
    name = postgres_columns.relation_name(node.relation) if node.relation else ""
    if node.concurrent or state.exempt(name) or state.is_new_object(name):
        return []
    return [
        rules_locks.blocking_without_concurrently(
            "REFRESH MATERIALIZED VIEW", name, "every read of it"
        )
    ]


def lock(node: ast.LockStmt, state: PlanState) -> list[Issue]:
    tables = [
        postgres_columns.relation_name(relation)
        for relation in node.relations or ()
        if isinstance(relation, ast.RangeVar)
    ]
    existing = state.existing(tables)
    return [rules_locks.explicit_lock(", ".join(existing))] if existing else []


def alter_domain(node: ast.AlterDomainStmt) -> list[Issue]:
    constraint = node.def_
    if node.subtype != "C" or not isinstance(constraint, ast.Constraint):
        return []
    if constraint.skip_validation:
        return []
    name = postgres_columns.object_name(node.typeName or ())
    return [
        rules_locks.scan_under_lock(
            f"Adding a constraint to domain {name}",
            f"every table with a column of type {name}",
            "Add it NOT VALID, then VALIDATE CONSTRAINT in a later migration.",
        )
    ]


def procedural(node: ast.Node, state: PlanState) -> list[Issue]:
    match node:
        case ast.DoStmt():
            return [rules.procedural("A DO block")]
        case ast.CallStmt():
            return [rules.procedural("CALL")]
        case ast.ExecuteStmt():
            return [rules.procedural("EXECUTE of a prepared statement")]
        case ast.CreateFunctionStmt():
            name = postgres_columns.object_name(node.funcname or ())
            state.create_object(name)
            what = "CREATE PROCEDURE" if node.is_procedure else "CREATE FUNCTION"
            return [rules.procedural(f"{what} {name}")]
    return []


def duplicate_assignment(node: ast.UpdateStmt) -> list[Issue]:
    names = [target.name for target in node.targetList or () if isinstance(target, ast.ResTarget)]
    repeated = sorted({name for name in names if name and names.count(name) > 1})
    if not repeated:
        return []
    return [rules.always_fails(f"column {', '.join(repeated)} is assigned twice")]


def created_name(node: ast.Node) -> str:
    """The name a CREATE VIEW / SEQUENCE / TYPE / DOMAIN statement gives its object."""
    match node:
        case ast.ViewStmt(view=view) | ast.CreateSeqStmt(sequence=view) if view is not None:
            return postgres_columns.relation_name(view)
        case ast.CreateEnumStmt(typeName=names) | ast.CreateDomainStmt(domainname=names):
            return postgres_columns.object_name(names or ())
    return ""
