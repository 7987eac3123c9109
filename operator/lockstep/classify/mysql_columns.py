"""Read names and column definitions from sqlglot's syntax tree (MySQL/MariaDB and SQLite).

A column definition becomes a :class:`~lockstep.classify.plan.Column`: its type, spelt the
way :mod:`lockstep.classify.coltypes` compares types, and whether it may hold NULL.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from sqlglot import exp

from lockstep.classify.coltypes import ColumnType
from lockstep.classify.findings import Dialect
from lockstep.classify.plan import Column

_TEXT_CAPACITY: Final = {
    "tinytext": 255,
    "text": 65_535,
    "mediumtext": 16_777_215,
    "longtext": 4_294_967_295,
}
_TYPE_NAMES: Final = {
    "bpchar": "char",
    "utinyint": "tinyint unsigned",
    "usmallint": "smallint unsigned",
    "umediumint": "mediumint unsigned",
    "uint": "int unsigned",
    "ubigint": "bigint unsigned",
    "udecimal": "decimal unsigned",
    "udouble": "double unsigned",
}
# DEFAULT values that are stored once in the table's metadata, not evaluated per row.
_CONSTANT_DEFAULTS: Final = (
    exp.Literal,
    exp.Null,
    exp.Boolean,
    exp.CurrentTimestamp,
    exp.Neg,
    exp.BitString,
    exp.HexString,
)
_VALUE_CONSTRAINTS: Final = (
    exp.DefaultColumnConstraint,
    exp.AutoIncrementColumnConstraint,
    exp.GeneratedAsIdentityColumnConstraint,
    exp.ComputedColumnConstraint,
)


def table_name(table: exp.Expr | None) -> str:
    if not isinstance(table, exp.Table):
        return ""
    parts = (table.catalog, table.db, table.name)
    return ".".join(part for part in parts if part)


def find_constraint(definition: exp.ColumnDef, kind: type[exp.Expr]) -> exp.Expr | None:
    for constraint in definition.constraints:
        if isinstance(constraint.kind, kind):
            return constraint.kind
    return None


def column(definition: exp.ColumnDef, dialect: Dialect) -> Column:
    not_null = find_constraint(definition, exp.NotNullColumnConstraint)
    explicit_not_null = not_null is not None and not not_null.args.get("allow_null")
    primary_key = find_constraint(definition, exp.PrimaryKeyColumnConstraint) is not None
    kind = definition.args.get("kind")
    column_type = _column_type(kind, dialect) if isinstance(kind, exp.DataType) else None
    auto_increment = find_constraint(definition, exp.AutoIncrementColumnConstraint) is not None
    return Column(
        column_type or ColumnType("unknown"),
        not (explicit_not_null or primary_key),
        auto_increment,
    )


def copying_value(definition: exp.ColumnDef) -> str:
    """Why adding this column copies the table (``""``: it does not)."""
    computed = find_constraint(definition, exp.ComputedColumnConstraint)
    if computed is not None and computed.args.get("persisted"):
        return "a STORED generated column is computed and stored for every row"
    if find_constraint(definition, exp.AutoIncrementColumnConstraint) is not None:
        return "AUTO_INCREMENT numbers every existing row"
    default = find_constraint(definition, exp.DefaultColumnConstraint)
    value = default.this if default is not None else None
    if value is not None and not isinstance(value, _CONSTANT_DEFAULTS):
        return "an expression DEFAULT is evaluated for every row"
    return ""


def varchar_bytes(kind: ColumnType) -> int:
    """The most bytes a VARCHAR holds, taking utf8mb4 (4 bytes a character) when unknown."""
    return 4 * kind.params[0] if kind.name == "varchar" and kind.params else 0


def has_value(definition: exp.ColumnDef) -> bool:
    """True when existing rows get a value: a DEFAULT, AUTO_INCREMENT or generated column."""
    return any(find_constraint(definition, kind) is not None for kind in _VALUE_CONSTRAINTS)


def _column_type(data_type: exp.DataType, dialect: Dialect) -> ColumnType:
    base = str(data_type.this.value).lower()
    members = [item for item in data_type.expressions if isinstance(item, exp.Literal)]
    if base in {"enum", "set"}:
        return ColumnType(base, values=tuple(member.name for member in members))
    if base in _TEXT_CAPACITY:
        return _text_type(base, dialect)
    return ColumnType(_TYPE_NAMES.get(base, base), _type_params(data_type))


def _text_type(base: str, dialect: Dialect) -> ColumnType:
    """MySQL's TEXT types have a size; SQLite's TEXT has none."""
    if dialect == "sqlite":
        return ColumnType("text")
    return ColumnType("text", (_TEXT_CAPACITY[base],))


def _type_params(data_type: exp.DataType) -> tuple[int, ...]:
    params: list[int] = []
    for item in data_type.expressions:
        value = item.this if isinstance(item, exp.DataTypeParam) else item
        if isinstance(value, exp.Literal) and value.is_int:
            params.append(int(value.name))
    return tuple(params)


def plain_columns(keys: Sequence[exp.Expr]) -> tuple[str, ...]:
    """The column names of a key's parts, ``()`` when any part is an expression or a
    prefix (``name(10)``): a GROUP BY over whole columns would not find their duplicates."""
    names = []
    for key in keys:
        part = key.this if isinstance(key, exp.Ordered) else key
        if isinstance(part, exp.Column | exp.Identifier) and part.name:
            names.append(part.name)
        else:
            return ()
    return tuple(names)
