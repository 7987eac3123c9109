"""The OpenAPI v3 side of the CRD: walking, defaulting and validating objects.

Exists to mirror what the kube-apiserver does with the structural schema
(everything except the CEL rules): fill in `default`s, check the schema with
`jsonschema` (after `to_json_schema` converted it) plus the
`x-kubernetes-list-type` invariants, word each error as the apiserver does,
and report the fields it would prune (`unknown_fields`).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Mapping, Sequence
from functools import cache
from typing import Any

import jsonschema

from lockstep.local.field_errors import (
    DUPLICATE,
    INVALID,
    NOT_SUPPORTED,
    REQUIRED,
    TOO_LONG,
    TOO_MANY,
    TYPE_INVALID,
    FieldError,
    Schema,
    child_path,
    index_path,
    value_text,
)


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if value is None:
        return "null"
    return "object"


# --------------------------------------------------------------------------- walking


def iter_schema(schema: Schema, path: str = "") -> Iterator[tuple[str, Schema]]:
    """Every schema node with its path: `spec.retry`, `spec.env[]`, `spec.nodeSelector{}`."""
    yield path, schema
    for name, sub in (schema.get("properties") or {}).items():
        yield from iter_schema(sub, child_path(path, name))
    items = schema.get("items")
    if isinstance(items, Mapping):
        yield from iter_schema(items, f"{path}[]")
    extra = schema.get("additionalProperties")
    if isinstance(extra, Mapping):
        yield from iter_schema(extra, f"{path}{{}}")
    for key in ("allOf", "anyOf", "oneOf"):
        for i, sub in enumerate(schema.get(key) or []):
            yield from iter_schema(sub, f"{path}<{key}[{i}]>")
    if isinstance(schema.get("not"), Mapping):
        yield from iter_schema(schema["not"], f"{path}<not>")


def schema_at(schema: Schema, path: Sequence[str]) -> Schema | None:
    """The schema of the field `path` (names; `[]` steps into list items), if declared."""
    node: Schema | None = schema
    for step in path:
        if node is None:
            return None
        if step == "[]":
            items = node.get("items")
            node = items if isinstance(items, Mapping) else None
            continue
        props = node.get("properties") or {}
        if step in props:
            node = props[step]
        elif isinstance(node.get("additionalProperties"), Mapping):
            node = node["additionalProperties"]
        else:
            return None
    return node


# --------------------------------------------------------------------------- defaulting


def apply_defaults(schema: Schema, value: Any) -> Any:
    """A copy of `value` with the schema's defaults filled in, as the apiserver does.

    Defaults apply to absent properties of objects that are present (and to
    list items and map values); an absent object is not created.
    """
    value = copy.deepcopy(value)
    _default_in_place(schema, value)
    return value


def _default_in_place(schema: Schema, value: Any) -> None:
    if isinstance(value, dict):
        for name, sub in (schema.get("properties") or {}).items():
            if name not in value and "default" in sub:
                value[name] = copy.deepcopy(sub["default"])
            if name in value:
                _default_in_place(sub, value[name])
        extra = schema.get("additionalProperties")
        if isinstance(extra, Mapping):
            props = schema.get("properties") or {}
            for key, item in value.items():
                if key not in props:
                    _default_in_place(extra, item)
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for item in value:
            _default_in_place(schema["items"], item)


# --------------------------------------------------------------------------- OpenAPI -> JSON Schema


def to_json_schema(schema: Schema) -> dict[str, Any]:
    """Convert a structural OpenAPI v3 schema into a JSON Schema (draft 4).

    Drops the `x-kubernetes-*` extensions (after turning
    `x-kubernetes-int-or-string` into `type: [integer, string]`), turns
    `nullable: true` into a `null` type, and keeps the rest, which draft 4
    reads the same way (`exclusiveMinimum` as a boolean, `format`).
    """
    out: dict[str, Any] = {}
    for key, val in schema.items():
        if key.startswith("x-kubernetes-") or key == "nullable":
            continue
        if key == "properties":
            out[key] = {name: to_json_schema(sub) for name, sub in val.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(val, Mapping):
            out[key] = to_json_schema(val)
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [to_json_schema(sub) for sub in val]
        else:
            out[key] = copy.deepcopy(val)
    if schema.get("x-kubernetes-int-or-string"):
        out["type"] = ["integer", "string"]
    if schema.get("nullable"):
        if isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
        elif isinstance(out.get("type"), list) and "null" not in out["type"]:
            out["type"] = [*out["type"], "null"]
        if "enum" in out and None not in out["enum"]:
            out["enum"] = [*out["enum"], None]
    return out


def _word_schema_error(err: jsonschema.ValidationError) -> list[FieldError]:
    path = ""
    for step in err.absolute_path:
        path = index_path(path, step) if isinstance(step, int) else child_path(path, str(step))
    kw = err.validator
    # Any: the stubs type these as "maybe unset", but iter_errors always sets them.
    inst: Any = err.instance
    val: Any = err.validator_value
    if kw == "required":
        missing = [p for p in val if isinstance(inst, dict) and p not in inst]
        return [FieldError(child_path(path, p), REQUIRED) for p in missing]
    if kw == "enum":
        supported = ", ".join(value_text(v) for v in val)
        detail = f"{value_text(inst)}: supported values: {supported}"
        return [FieldError(path, NOT_SUPPORTED, detail)]
    if kw == "type":
        types = val if isinstance(val, list) else [val]
        got = _json_type(inst)
        return [
            FieldError(
                path,
                TYPE_INVALID,
                f'"{got}": {path} in body must be of type {",".join(types)}: "{got}"',
            )
        ]
    body = f"{value_text(inst)}: {path} in body"
    simple = {
        "pattern": lambda: f"{body} should match '{val}'",
        "minLength": lambda: f"{body} should be at least {val} chars long",
        "minimum": lambda: f"{body} should be greater than or equal to {val}",
        "maximum": lambda: f"{body} should be less than or equal to {val}",
        "minItems": lambda: f"{body} should have at least {val} items",
        "format": lambda: f"{body} must be of type {val}",
    }
    if kw in simple:
        return [FieldError(path, INVALID, simple[kw]())]
    if kw == "maxLength":
        return [FieldError(path, TOO_LONG, f"may not be more than {val} bytes")]
    if kw == "maxItems":
        return [FieldError(path, TOO_MANY, f"{len(inst)}: must have at most {val} items")]
    return [FieldError(path, INVALID, f"{value_text(inst)}: {err.message}")]


@cache
def _validator_for(schema_json: str) -> jsonschema.Draft4Validator:
    return jsonschema.Draft4Validator(
        to_json_schema(json.loads(schema_json)),
        format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER,
    )


def schema_errors(schema: Schema, obj: Any) -> list[FieldError]:
    """OpenAPI (jsonschema) and list-type errors of `obj`, worded as the apiserver does."""
    validator = _validator_for(json.dumps(schema, sort_keys=True))
    errors: list[FieldError] = []
    for err in sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path))):
        for fe in _word_schema_error(err):
            if fe not in errors:
                errors.append(fe)
    errors.extend(list_type_errors(schema, obj))
    return errors


def list_type_errors(schema: Schema, value: Any, path: str = "") -> list[FieldError]:
    """Duplicates in `x-kubernetes-list-type: set` and `map` lists."""
    errors: list[FieldError] = []
    if isinstance(value, dict):
        for name, sub in (schema.get("properties") or {}).items():
            if name in value:
                errors.extend(list_type_errors(sub, value[name], child_path(path, name)))
    elif isinstance(value, list):
        kind = schema.get("x-kubernetes-list-type")
        seen: set[str] = set()
        for i, item in enumerate(value):
            if kind == "set":
                key = json.dumps(item, sort_keys=True)
                shown = value_text(item)
            elif kind == "map" and isinstance(item, dict):
                keys = schema.get("x-kubernetes-list-map-keys") or []
                ident = {k: item.get(k) for k in keys}
                key = json.dumps(ident, sort_keys=True)
                shown = json.dumps(ident, separators=(",", ":"), sort_keys=True)
            else:
                key = ""
            if key and key in seen:
                errors.append(FieldError(index_path(path, i), DUPLICATE, shown))
            seen.add(key)
            if isinstance(schema.get("items"), Mapping):
                errors.extend(list_type_errors(schema["items"], item, index_path(path, i)))
    return errors


def unknown_fields(schema: Schema, value: Any, path: str = "") -> list[str]:
    """Fields the schema does not declare (the apiserver prunes them, or rejects
    them under strict field validation). The root `metadata` is not checked."""
    found: list[str] = []
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return found
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            p = child_path(path, key)
            if key in props:
                if not (path == "" and key == "metadata"):
                    found.extend(unknown_fields(props[key], item, p))
            elif isinstance(extra, Mapping):
                found.extend(unknown_fields(extra, item, index_path(path, key)))
            elif extra is not True:
                found.append(p)
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for i, item in enumerate(value):
            found.extend(unknown_fields(schema["items"], item, index_path(path, i)))
    return found


def prune_nulls(schema: Schema, value: Any) -> Any:
    """A copy of `value` without the `null`s the schema does not allow (`nullable` unset).

    The apiserver drops such nulls before defaulting, so `target: null` in YAML means "no
    target" (then the default), never the string "None".
    """
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        pruned: dict[str, Any] = {}
        for key, item in value.items():
            sub = props.get(key, extra if isinstance(extra, Mapping) else None)
            if item is None and sub is not None and not sub.get("nullable"):
                continue
            pruned[key] = prune_nulls(sub, item) if sub is not None else copy.deepcopy(item)
        return pruned
    if isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        return [prune_nulls(schema["items"], item) for item in value]
    return copy.deepcopy(value)
