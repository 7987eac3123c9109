"""Column types in one dialect-neutral shape, and how a type change affects the data.

Both parsers' type nodes are turned into a :class:`ColumnType` (a lower-case base name,
integer parameters such as lengths and precisions, and ENUM/SET members).  Comparing the
type a column had earlier in the plan with the type a statement gives it tells whether
the change can lose data (*narrowing*: shorter strings, smaller integers, fewer
digits or enum members), only grows the range (*widening*) or converts between
unrelated types (*conversion*).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final, Literal

Change = Literal["unknown", "same", "widening", "narrowing", "conversion"]

_STRING_TYPES: Final = frozenset({"char", "varchar", "text", "nchar", "nvarchar"})
_INTEGER_RANKS: Final = {"tinyint": 1, "smallint": 2, "mediumint": 3, "int": 4, "bigint": 5}
_FLOAT_RANKS: Final = {"float": 1, "double": 2}
_DECIMAL_TYPES: Final = frozenset({"decimal"})
_MEMBER_TYPES: Final = frozenset({"enum", "set"})


@dataclass(frozen=True)
class ColumnType:
    """A column type: ``varchar(10)`` is ``ColumnType("varchar", (10,))``.

    ``values`` holds the members of an ENUM or SET type, in declaration order.
    """

    name: str
    params: tuple[int, ...] = ()
    values: tuple[str, ...] = ()

    def __str__(self) -> str:
        if self.values:
            members = ",".join(f"'{value}'" for value in self.values)
            return f"{self.name}({members})"
        if self.params:
            return f"{self.name}({','.join(str(param) for param in self.params)})"
        return self.name


def compare(old: ColumnType | None, new: ColumnType) -> Change:
    """How changing a column from ``old`` (``None``: not known) to ``new`` affects its data."""
    if old is None:
        return "unknown"
    if old == new:
        return "same"
    if old.name in _MEMBER_TYPES and new.name == old.name:
        if not set(old.values) <= set(new.values):
            return "narrowing"
        # Appending keeps every stored member's number; inserting renumbers them.
        return "widening" if new.values[: len(old.values)] == old.values else "conversion"
    for family in (_strings, _integers, _floats, _decimals):
        change = family(old, new)
        if change is not None:
            return change
    return _across_families(old, new)


def removed_members(old: ColumnType | None, new: ColumnType) -> tuple[str, ...]:
    """ENUM/SET members ``old`` had and ``new`` lacks (empty unless both are enums/sets)."""
    if old is None or old.name not in _MEMBER_TYPES or new.name not in _MEMBER_TYPES:
        return ()
    return tuple(value for value in old.values if value not in new.values)


def _by_size(old_size: float, new_size: float) -> Change:
    if new_size < old_size:
        return "narrowing"
    return "widening" if new_size > old_size else "conversion"


def _string_capacity(kind: ColumnType) -> float:
    return float(kind.params[0]) if kind.params else math.inf


def _strings(old: ColumnType, new: ColumnType) -> Change | None:
    if old.name not in _STRING_TYPES or new.name not in _STRING_TYPES:
        return None
    return _by_size(_string_capacity(old), _string_capacity(new))


def _integers(old: ColumnType, new: ColumnType) -> Change | None:
    if old.name not in _INTEGER_RANKS or new.name not in _INTEGER_RANKS:
        return None
    return _by_size(_INTEGER_RANKS[old.name], _INTEGER_RANKS[new.name])


def _floats(old: ColumnType, new: ColumnType) -> Change | None:
    if old.name not in _FLOAT_RANKS or new.name not in _FLOAT_RANKS:
        return None
    return _by_size(_FLOAT_RANKS[old.name], _FLOAT_RANKS[new.name])


def _decimal_digits(kind: ColumnType) -> tuple[float, float]:
    """(digits before the point, digits after it); no precision means unbounded."""
    if not kind.params:
        return math.inf, math.inf
    precision = kind.params[0]
    scale = kind.params[1] if len(kind.params) > 1 else 0
    return float(precision - scale), float(scale)


def _decimals(old: ColumnType, new: ColumnType) -> Change | None:
    if old.name not in _DECIMAL_TYPES or new.name not in _DECIMAL_TYPES:
        return None
    (old_whole, old_fraction), (new_whole, new_fraction) = (
        _decimal_digits(old),
        _decimal_digits(new),
    )
    if new_whole < old_whole or new_fraction < old_fraction:
        return "narrowing"
    return "widening"


def _across_families(old: ColumnType, new: ColumnType) -> Change:
    """Fractional numbers turned into integers lose digits; anything else is a conversion."""
    fractional = old.name in _DECIMAL_TYPES or old.name in _FLOAT_RANKS
    if fractional and new.name in _INTEGER_RANKS:
        return "narrowing"
    return "conversion"
