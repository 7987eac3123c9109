"""Read names and column definitions from pglast's syntax tree (PostgreSQL).

A column definition becomes a :class:`~lockstep.classify.plan.Column`: its type, spelt the
way :mod:`lockstep.classify.coltypes` compares types (``int4`` is ``int``, ``serial`` is
``int``), and whether it may hold NULL.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from pglast import ast
from pglast.enums import ConstrType

from lockstep.classify.coltypes import ColumnType
from lockstep.classify.plan import Column

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


def relation_name(relation: ast.RangeVar) -> str:
    parts = (relation.schemaname, relation.relname)
    return ".".join(part for part in parts if part)


def object_name(item: object) -> str:
    """A dotted name from a DROP object: a String, a list of Strings or a TypeName."""
    if isinstance(item, ast.String):
        return item.sval or ""
    if isinstance(item, ast.TypeName):
        return object_name(item.names or ())
    if isinstance(item, tuple | list):
        return ".".join(object_name(part) for part in item)
    return ""


def is_column(element: object) -> bool:
    return isinstance(element, ast.ColumnDef)


def constraint_types(definition: ast.ColumnDef) -> list[ConstrType]:
    constraints = definition.constraints or ()
    return [c.contype for c in constraints if isinstance(c, ast.Constraint) and c.contype]


def column(definition: ast.ColumnDef) -> Column:
    kinds = set(constraint_types(definition))
    not_null = bool(definition.is_not_null) or bool(kinds & _NOT_NULL_CONSTRAINTS)
    kind = column_type(definition.typeName) if definition.typeName else ColumnType("unknown")
    return Column(kind, nullable=not not_null)


def has_value(definition: ast.ColumnDef) -> bool:
    """True when existing rows get a value: a DEFAULT, identity, generated or serial."""
    if definition.raw_default is not None or _base_type_name(definition) in _SERIAL_TYPES:
        return True
    return bool(set(constraint_types(definition)) & _VALUE_CONSTRAINTS)


def _base_type_name(definition: ast.ColumnDef) -> str:
    names = definition.typeName.names if definition.typeName else None
    return object_name(names[-1]).lower() if names else ""


def column_type(type_name: ast.TypeName) -> ColumnType:
    names = type_name.names or ()
    base = object_name(names[-1]).lower() if names else "unknown"
    name = _TYPE_NAMES.get(base, base) + ("[]" if type_name.arrayBounds else "")
    return ColumnType(name, _type_params(type_name.typmods or ()))


def _type_params(modifiers: Sequence[object]) -> tuple[int, ...]:
    values = [
        modifier.val.ival
        for modifier in modifiers
        if isinstance(modifier, ast.A_Const) and isinstance(modifier.val, ast.Integer)
    ]
    return tuple(value for value in values if value is not None)


def is_text(kind: ColumnType) -> bool:
    return kind.name in {"varchar", "text"}
