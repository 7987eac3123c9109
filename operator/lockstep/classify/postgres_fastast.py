"""pglast's syntax tree, built from libpg_query's JSON output three times faster.

``pglast.parse_sql`` builds its tree through ``Node.__setattr__``, which checks and adapts
every value; for a 5,000-statement file that is most of the classifier's time.  The same
parser's JSON output (``parse_sql_json``, in C) read by ``json.loads`` (in C) and turned into
the same node classes with plain attribute stores gives an equal tree (pglast's ``==``
compares them; tests/unit/test_classify_fastast.py checks every corpus statement) in a
fraction of the time.  Fields the JSON leaves out are the C structure's zero values, so
they become ``0``, ``False``, the enum's zero member or ``None`` as pglast would give them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from enum import Enum, IntEnum
from functools import cache
from typing import Any, Final

from pglast import ast, enums, parser

_SET: Final = object.__setattr__
_VALUE_SLOTS: Final[dict[str, Callable[[Any], Any]]] = {"ival": lambda v: v or 0, "boolval": bool}
_CONSTANT_VALUES: Final = ("ival", "fval", "boolval", "sval", "bsval")


def parse(sql: str) -> list[ast.RawStmt]:
    """The statements of ``sql`` as ``pglast.parse_sql`` gives them (raises ``ParseError``).

    Should the JSON hold a shape this module does not know (a newer libpg_query), the
    statements come from ``pglast.parse_sql`` instead: slower, never different.
    """
    document = json.loads(parser.parse_sql_json(sql))
    try:
        return [_node("RawStmt", raw) for raw in document.get("stmts", ())]
    except (AttributeError, KeyError, TypeError, ValueError):
        return list(parser.parse_sql(sql))


@cache
def _fields(name: str) -> tuple[tuple[str, str, Callable[[Any], Any]], ...]:
    """(JSON key, attribute, how a missing or given value becomes the attribute's value)."""
    slots = getattr(ast, name).__slots__
    if not isinstance(slots, dict):  # the value nodes: Integer, Float, Boolean, String ...
        return tuple((slot, slot, _VALUE_SLOTS.get(slot, _value)) for slot in slots)
    return tuple((slot.rstrip("_"), slot, _converter(info.c_type)) for slot, info in slots.items())


def _converter(c_type: str) -> Callable[[Any], Any]:
    if c_type.endswith("*"):  # a pointer: a node of a known class, a list, a string or NULL
        name = c_type[:-1]
        known = getattr(ast, name, None)
        if name != "Node" and isinstance(known, type) and issubclass(known, ast.Node):
            return lambda value: _typed(name, value)
        return _value
    enum = getattr(enums, c_type, None)
    if isinstance(enum, type) and issubclass(enum, IntEnum):
        return lambda value: enum[value] if isinstance(value, str) else enum(value or 0)
    if isinstance(enum, type) and issubclass(enum, Enum):  # char-valued enums
        return lambda value: enum[value] if value is not None else next(iter(enum))
    if c_type == "bool":
        return bool
    if c_type == "char":
        return lambda value: value if value is not None else "\x00"
    return lambda value: value or 0  # a number the JSON leaves out when it is zero


def _node(name: str, data: dict[str, Any]) -> Any:
    node = object.__new__(getattr(ast, name))
    if name == "A_Const":
        return _constant(node, data)
    for key, slot, convert in _fields(name):
        _SET(node, slot, convert(data.get(key)))
    return node


def _constant(node: ast.A_Const, data: dict[str, Any]) -> ast.A_Const:
    """``A_Const`` holds its value under the value's kind in the JSON, in ``val`` in pglast."""
    for key, slot, convert in _fields("A_Const"):
        if slot != "val":
            _SET(node, slot, convert(data.get(key)))
    value = None
    for key in _CONSTANT_VALUES:
        if key in data:
            kind = {"ival": "Integer", "fval": "Float", "boolval": "Boolean"}.get(key, "")
            value = _node(kind or ("String" if key == "sval" else "BitString"), data[key])
    _SET(node, "val", value)
    return node


def _typed(name: str, value: Any) -> Any:
    """A pointer to a known node class: the JSON gives its fields without the class name."""
    if isinstance(value, dict) and not _is_wrapped(value):
        return _node(name, value)
    return _value(value)


def _is_wrapped(value: dict[str, Any]) -> bool:
    if len(value) != 1:
        return False
    (key,) = value
    return key[:1].isupper() and (key == "List" or hasattr(ast, key))


def _value(value: Any) -> Any:
    if isinstance(value, dict) and not value:
        return None  # a NULL in a list
    if isinstance(value, dict):
        if len(value) == 1:
            ((name, inner),) = value.items()
            if name == "List" and isinstance(inner, dict):  # a list inside a list
                return tuple(_value(item) for item in inner.get("items", ()))
            if isinstance(inner, dict) and hasattr(ast, name):
                return _node(name, inner)
        return value
    if isinstance(value, list):
        return tuple(_value(item) for item in value)
    return value
