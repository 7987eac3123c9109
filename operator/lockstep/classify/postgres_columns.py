"""Read names and column definitions from pglast's syntax tree (PostgreSQL).

A column definition becomes a :class:`~lockstep.classify.plan.Column`: its type, spelt the
way :mod:`lockstep.classify.coltypes` compares types (``int4`` is ``int``, ``serial`` is
``int``), and whether it may hold NULL.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Final

from pglast import ast
from pglast.enums import ConstrType, NullTestType

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
    if isinstance(item, ast.ObjectWithArgs):
        return object_name(item.objname or ())
    if isinstance(item, ast.RangeVar):
        return relation_name(item)
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


# Functions a DEFAULT may call without being evaluated per row: PostgreSQL stores the value
# once (PostgreSQL 11+) when the default is not volatile.  Any other call is taken to be
# volatile, since a parser cannot look a function's volatility up.
_STABLE_FUNCTIONS: Final = frozenset(
    {"now", "transaction_timestamp", "statement_timestamp", "current_setting", "lower"}
    | {"upper", "concat", "to_char", "to_timestamp", "to_date", "jsonb_build_object"}
    | {"json_build_object", "array", "make_interval", "length", "trim", "replace"}
    # AT TIME ZONE and EXTRACT are function calls in the tree (timezone, extract).
    | {"timezone", "date_trunc", "extract", "date_part", "make_date", "make_timestamp"}
    | {"make_timestamptz", "abs", "round", "trunc", "substring", "btrim", "ltrim", "rtrim"}
    | {"left", "right", "md5", "format", "to_json", "to_jsonb", "jsonb_build_array"}
    | {"json_build_array", "position"}
)


def walk(node: object) -> Iterator[ast.Node]:
    """``node`` and every node below it, depth first."""
    if isinstance(node, ast.Node):
        yield node
        slots: Iterable[str] = getattr(type(node), "__slots__", ())
        for slot in slots:
            yield from walk(getattr(node, slot, None))
    elif isinstance(node, tuple | list):
        for item in node:
            yield from walk(item)


def default_expression(definition: ast.ColumnDef) -> ast.Node | None:
    if definition.raw_default is not None:
        return definition.raw_default
    for constraint in definition.constraints or ():
        if (
            isinstance(constraint, ast.Constraint)
            and constraint.contype == ConstrType.CONSTR_DEFAULT
        ):
            expression: ast.Node | None = constraint.raw_expr
            return expression
    return None


def volatile_call(expression: ast.Node | None) -> str:
    """The first function in ``expression`` that may return a new value per row, or ``""``."""
    for node in walk(expression):
        if isinstance(node, ast.FuncCall):
            name = object_name(node.funcname[-1] if node.funcname else ()).lower()
            if name not in _STABLE_FUNCTIONS:
                return name
    return ""


def rewriting_value(definition: ast.ColumnDef) -> str:
    """Why adding this column writes every row (``""``: it does not)."""
    kinds = set(constraint_types(definition))
    if ConstrType.CONSTR_IDENTITY in kinds:
        return "as an identity column"
    if ConstrType.CONSTR_GENERATED in kinds:
        return "as a stored generated column"
    if _base_type_name(definition) in _SERIAL_TYPES:
        return f"as {_base_type_name(definition)} (a nextval() default)"
    call = volatile_call(default_expression(definition))
    return f"with a volatile DEFAULT ({call}() is evaluated for each row)" if call else ""


def has_non_null_default(definition: ast.ColumnDef) -> bool:
    expression = default_expression(definition)
    if expression is None:
        return False
    return not (isinstance(expression, ast.A_Const) and expression.isnull)


def not_null_check_column(expression: object) -> str:
    """The column of a ``CHECK (column IS NOT NULL)``, or ``""`` for any other check."""
    if (
        not isinstance(expression, ast.NullTest)
        or expression.nulltesttype != NullTestType.IS_NOT_NULL
    ):
        return ""
    argument = expression.arg
    if isinstance(argument, ast.ColumnRef) and argument.fields:
        return object_name(argument.fields[-1]).lower()
    return ""


def is_decimal_widening(old: ColumnType | None, new: ColumnType) -> bool:
    """More digits before the point at the same scale (or no limit): no rewrite."""
    if old is None or old.name != "decimal" or new.name != "decimal":
        return False
    if not new.params:
        return True
    old_scale = old.params[1] if len(old.params) > 1 else 0
    new_scale = new.params[1] if len(new.params) > 1 else 0
    return bool(old.params) and new_scale == old_scale and new.params[0] >= old.params[0]


def key_columns(constraint: ast.Constraint) -> tuple[str, ...]:
    """The columns of a UNIQUE / PRIMARY KEY constraint (``()`` for an exclusion constraint
    or NULLS NOT DISTINCT, whose duplicates a plain GROUP BY would not find)."""
    if constraint.contype == ConstrType.CONSTR_EXCLUSION or constraint.nulls_not_distinct:
        return ()
    return tuple(object_name(key) for key in constraint.keys or ())


def index_columns(node: ast.IndexStmt) -> tuple[str, ...]:
    """The plain columns of a unique index (``()`` for an expression or partial index)."""
    if node.whereClause is not None or getattr(node, "nulls_not_distinct", False):
        return ()
    names = [
        element.name if isinstance(element, ast.IndexElem) and element.expr is None else None
        for element in node.indexParams or ()
    ]
    return () if None in names else tuple(name or "" for name in names)
