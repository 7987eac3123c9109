"""Static checks of the CRD's schema itself, not of objects against it.

Exists because the apiserver refuses a CRD whose schema is not structural or
whose CEL rules it cannot type-check or cost-bound, and cel-python does
neither: `structural_problems`, `rule_reference_problems` and `cost_problems`
catch those mistakes (and this project's documentation rules) in unit tests.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import jsonschema

from lockstep.local.cel_rules import iter_rules
from lockstep.local.field_errors import Schema
from lockstep.local.openapi import iter_schema, schema_at, to_json_schema

# `self.a.b` chains; a last step followed by `(` is a method call, not a field.
_SELF_PATH = re.compile(r"\bself((?:\.[A-Za-z_][A-Za-z0-9_]*(?![A-Za-z0-9_]*\())+)")
# Kubernetes declares only these root fields to rules on the root (besides spec/status).
_ROOT_ONLY = {("metadata", "name"), ("metadata", "generateName"), ("apiVersion",), ("kind",)}


def _node_steps(node: str) -> list[str]:
    steps: list[str] = []
    for part in re.findall(r"[^.\[\]{}]+|\[\]|\{\}", node):
        steps.append("[]" if part in ("[]", "{}") else part)
    return steps


def rule_reference_problems(schema: Schema) -> list[str]:
    """Fields that rules (and fieldPaths) name but the schema does not declare.

    The apiserver type-checks rules against the schema when the CRD is
    written; cel-python does not, so a misspelt field would only fail at run
    time. This checks `self.a.b` chains (not through comprehension variables).
    """
    problems: list[str] = []
    for rule in iter_rules(schema):
        node_schema = schema_at(schema, _node_steps(rule.node))
        assert node_schema is not None, rule.node
        texts = [rule.rule] + ([rule.message_expression] if rule.message_expression else [])
        chains = [tuple(m.group(1)[1:].split(".")) for t in texts for m in _SELF_PATH.finditer(t)]
        if rule.field_path:
            chains.append(tuple(re.findall(r"[A-Za-z_][A-Za-z0-9_-]*", rule.field_path)))
        for chain in chains:
            if rule.node == "" and chain[:2] in _ROOT_ONLY | {c[:2] for c in _ROOT_ONLY}:
                continue
            if schema_at(node_schema, chain) is None:
                problems.append(f"{rule.node or '<root>'}: {'.'.join(chain)} is not declared")
    return problems


def _wrapped_only_in(text: str, expr: str, wrappers: Sequence[str]) -> bool:
    """Whether every use of `expr` in `text` is `fn(expr)` for an fn in `wrappers`.

    `expr.deeper` is another expression and does not count; `expr.method()` does.
    """
    for m in re.finditer(re.escape(expr) + r"(?![A-Za-z0-9_])", text):
        before = text[: m.start()]
        after = text[m.end() :]
        deeper = re.match(r"\.[A-Za-z_][A-Za-z0-9_]*(?![A-Za-z0-9_]*\s*\()", after)
        if deeper:
            continue
        if not (any(before.endswith(f"{w}(") for w in wrappers) and after.startswith(")")):
            return False
    return True


def cost_problems(schema: Schema) -> list[str]:
    """Bounds the apiserver's static CEL cost estimate needs, checked heuristically.

    - A string a rule reads (other than through `size()`/`has()`) has a
      maxLength or an enum; a list it reads has maxItems.
    - A rule under a list sits under a list with maxItems (the estimate
      multiplies a rule's cost by how often it can run).
    - A messageExpression does not call `string()`: the apiserver estimates the
      length of a converted number as unbounded (seen with
      apiextensions-apiserver v0.35), and the CRD is then refused.
    The exact estimate is the apiserver's; this catches the usual mistakes.
    """
    problems: list[str] = []
    for rule in iter_rules(schema):
        steps = _node_steps(rule.node)
        for i, step in enumerate(steps):
            if step == "[]":
                parent = schema_at(schema, steps[:i])
                if parent is not None and "maxItems" not in parent:
                    where = ".".join(steps[:i])
                    problems.append(f"{rule.node}: rule under list {where} without maxItems")
        node_schema = schema_at(schema, steps)
        assert node_schema is not None
        if rule.message_expression and re.search(r"\bstring\(", rule.message_expression):
            problems.append(f"{rule.node}: messageExpression calls string(), cost is unbounded")
        texts = [rule.rule] + ([rule.message_expression] if rule.message_expression else [])
        for text in texts:
            for m in _SELF_PATH.finditer(text):
                expr = "self" + m.group(1)
                target = schema_at(node_schema, m.group(1)[1:].split("."))
                if target is None or _wrapped_only_in(text, expr, ("has", "size")):
                    continue
                kind = target.get("type")
                if kind == "string" and "maxLength" not in target and "enum" not in target:
                    problems.append(f"{rule.node}: {expr} is a string without maxLength")
                if kind == "array" and "maxItems" not in target:
                    problems.append(f"{rule.node}: {expr} is a list without maxItems")
        if node_schema.get("type") == "string" and not {"maxLength", "enum"} & node_schema.keys():
            problems.append(f"{rule.node}: rule on a string without maxLength")
    return problems


_FORBIDDEN_KEYS = {
    "$ref",
    "$schema",
    "definitions",
    "dependencies",
    "id",
    "patternProperties",
    "additionalItems",
}
_SCALARS = frozenset({"string", "integer", "number", "boolean"})
_TYPES = _SCALARS | {"object", "array"}
_VALUE_VALIDATION_ONLY = {"type", "description", "default", "nullable", "additionalProperties"}


def structural_problems(schema: Schema) -> list[str]:
    """Why `schema` is not a structural, documented schema (empty when it is).

    Checks what the apiserver enforces for apiextensions.k8s.io/v1 (a type on
    every node, no additionalProperties beside properties, items a single
    schema, no $ref & co., logic junctors holding value validations only,
    list-map keys required or defaulted, root metadata restricted to name and
    generateName), plus this project's rules: a description on every field,
    defaults valid against their own schema, enum values of the node's type.
    """
    problems: list[str] = []
    for path, node in iter_schema(schema):
        where = path or "<root>"
        in_junctor = "<" in path
        if in_junctor:
            for key in _VALUE_VALIDATION_ONLY & node.keys():
                problems.append(f"{where}: {key} inside allOf/anyOf/oneOf/not")
            continue
        int_or_string = bool(node.get("x-kubernetes-int-or-string"))
        if int_or_string:
            if "type" in node:
                problems.append(f"{where}: x-kubernetes-int-or-string with a type")
        elif node.get("type") not in _TYPES:
            problems.append(f"{where}: type is {node.get('type')!r}, want one of {sorted(_TYPES)}")
        for key in _FORBIDDEN_KEYS & node.keys():
            problems.append(f"{where}: {key} is not allowed")
        if node.get("uniqueItems") is True:
            problems.append(f"{where}: uniqueItems: true is not allowed (use a list-type)")
        if "properties" in node and "additionalProperties" in node:
            problems.append(f"{where}: additionalProperties beside properties")
        has_fields = "properties" in node or "additionalProperties" in node
        if has_fields and node.get("type") != "object":
            problems.append(f"{where}: properties on a non-object")
        if node.get("type") == "array" and not isinstance(node.get("items"), Mapping):
            problems.append(f"{where}: an array needs items as one schema")
        if "items" in node and node.get("type") != "array":
            problems.append(f"{where}: items on a non-array")
        if node.get("x-kubernetes-preserve-unknown-fields") is False:
            problems.append(f"{where}: x-kubernetes-preserve-unknown-fields: false is not allowed")
        for key in ("required", "enum"):
            if key in node and not node[key]:
                problems.append(f"{where}: empty {key}")
        for req in node.get("required") or []:
            if req not in (node.get("properties") or {}):
                problems.append(f"{where}: required {req!r} is not a property")
        problems.extend(_list_type_problems(where, node))
        if path == "metadata":
            if set(node) - {"type", "properties"} or set(node.get("properties") or {}) - {
                "name",
                "generateName",
            }:
                problems.append("metadata: only name and generateName may be specified")
        elif path.startswith("metadata."):
            pass
        elif path and not (node.get("description") or "").strip():
            scalar_item = path.endswith(("[]", "{}")) and node.get("type") in _SCALARS
            if not scalar_item:
                problems.append(f"{where}: no description")
        if "enum" in node and not int_or_string:
            validator = jsonschema.Draft4Validator({"type": node.get("type")})
            for value in node["enum"]:
                if not validator.is_valid(value):
                    problems.append(f"{where}: enum value {value!r} is not a {node.get('type')}")
        if "default" in node:
            validator = jsonschema.Draft4Validator(to_json_schema(node))
            for err in validator.iter_errors(node["default"]):
                problems.append(f"{where}: default {node['default']!r} is invalid: {err.message}")
    return problems


def _list_type_problems(where: str, node: Schema) -> list[str]:
    problems: list[str] = []
    kind = node.get("x-kubernetes-list-type")
    keys = node.get("x-kubernetes-list-map-keys")
    if kind is None and keys is None:
        return problems
    if node.get("type") != "array":
        return [f"{where}: x-kubernetes-list-type on a non-array"]
    if kind not in ("atomic", "set", "map"):
        problems.append(f"{where}: x-kubernetes-list-type {kind!r}")
    items = node.get("items") or {}
    if kind == "map":
        if items.get("type") != "object" or not keys:
            problems.append(f"{where}: a list-type map needs object items and list-map-keys")
        for key in keys or []:
            prop = (items.get("properties") or {}).get(key)
            if prop is None:
                problems.append(f"{where}: list-map key {key!r} is not a property")
            elif key not in (items.get("required") or []) and "default" not in prop:
                problems.append(f"{where}: list-map key {key!r} must be required or defaulted")
            elif prop.get("type") not in ("string", "integer", "number", "boolean"):
                problems.append(f"{where}: list-map key {key!r} must be a scalar")
    elif keys is not None:
        problems.append(f"{where}: x-kubernetes-list-map-keys without list-type map")
    if kind == "set" and items.get("type") in ("object", "array"):
        problems.append(f"{where}: a list-type set needs scalar items")
    return problems
