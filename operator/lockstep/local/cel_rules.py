"""The CEL side of the CRD: its `x-kubernetes-validations` rules, evaluated.

Exists to run every rule with cel-python, `self` bound to the value at the
rule's node, and to turn a failing rule into the `FieldError` the apiserver
would report (its `reason`, `fieldPath`, `message` or `messageExpression`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import celpy
from celpy import celtypes
from celpy.adapter import json_to_cel
from celpy.evaluation import CELEvalError

from lockstep.local import cel_parser_cache
from lockstep.local.field_errors import (
    DUPLICATE,
    FORBIDDEN,
    INVALID,
    REQUIRED,
    FieldError,
    Schema,
    child_path,
    index_path,
    value_text,
)
from lockstep.local.openapi import iter_schema

# The `reason`s a rule may give (none means FieldValueInvalid).
_REASONS = {
    None: INVALID,
    INVALID: INVALID,
    REQUIRED: REQUIRED,
    FORBIDDEN: FORBIDDEN,
    DUPLICATE: DUPLICATE,
}


def _join_field_path(base: str, field_path: str) -> str:
    """Append a rule's `fieldPath` (`.a.b`, `['a.b']`, `[0]`) to `base`."""
    token = re.compile(r"\.([A-Za-z_][A-Za-z0-9_-]*)|\['([^']*)'\]|\[(\d+)\]")
    pos = 0
    out = base
    while pos < len(field_path):
        m = token.match(field_path, pos)
        if not m:
            raise ValueError(f"unsupported fieldPath {field_path!r}")
        name, quoted, index = m.groups()
        if index is not None:
            out = index_path(out, int(index))
        else:
            out = child_path(out, name if name is not None else quoted)
        pos = m.end()
    return out


@dataclass(frozen=True)
class Rule:
    """One `x-kubernetes-validations` entry and the schema node it sits on."""

    node: str
    rule: str
    message: str | None = None
    message_expression: str | None = None
    field_path: str | None = None
    reason: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


_RULE_KEYS = frozenset({"rule", "message", "messageExpression", "fieldPath", "reason"})


def _rule(node: str, entry: Mapping[str, Any]) -> Rule:
    return Rule(
        node=node,
        rule=entry["rule"],
        message=entry.get("message"),
        message_expression=entry.get("messageExpression"),
        field_path=entry.get("fieldPath"),
        reason=entry.get("reason"),
        extra={k: v for k, v in entry.items() if k not in _RULE_KEYS},
    )


def iter_rules(schema: Schema) -> Iterator[Rule]:
    """Every rule of the schema with its node path (`spec.retry`, `spec.env[]`)."""
    for path, node in iter_schema(schema):
        for entry in node.get("x-kubernetes-validations") or []:
            yield _rule(path, entry)


cel_parser_cache.install()
_ENV = celpy.Environment()


@cache
def compile_cel(expression: str) -> celpy.Runner:
    """Compile a CEL expression (raises celpy.CELParseError on a syntax error)."""
    return _ENV.program(_ENV.compile(expression))


def evaluate_cel(expression: str, self_value: Any) -> Any:
    """Evaluate `expression` with `self` bound to the JSON value `self_value`."""
    return compile_cel(expression).evaluate({"self": json_to_cel(self_value)})


def check_rule(rule: Rule, self_value: Any, path: str) -> FieldError | None:
    """Evaluate one rule at `path`; None when it holds."""
    where = _join_field_path(path, rule.field_path) if rule.field_path else path
    kind = _REASONS[rule.reason]
    try:
        result = evaluate_cel(rule.rule, self_value)
    except CELEvalError as exc:
        return FieldError(where, INVALID, f"{exc} evaluating rule: {rule.rule}", rule=rule.rule)
    if isinstance(result, CELEvalError):
        return FieldError(where, INVALID, f"{result} evaluating rule: {rule.rule}", rule=rule.rule)
    if not isinstance(result, celtypes.BoolType):
        detail = f"rule did not return a bool: {rule.rule}"
        return FieldError(where, INVALID, detail, rule=rule.rule)
    if result:
        return None
    message = rule.message or f"failed rule: {rule.rule}"
    if rule.message_expression:
        try:
            text = evaluate_cel(rule.message_expression, self_value)
        except CELEvalError:
            text = None
        if isinstance(text, str) and text.strip() and "\n" not in text:
            message = str(text)
    if kind == INVALID and not rule.field_path and not isinstance(self_value, dict | list):
        message = f"{value_text(self_value)}: {message}"
    return FieldError(where, kind, message, rule=rule.rule)


def rule_errors(schema: Schema, value: Any, path: str = "") -> list[FieldError]:
    """Evaluate every rule on every present value, depth first (rules of a node first)."""
    errors: list[FieldError] = []
    if value is None:
        return errors
    for entry in schema.get("x-kubernetes-validations") or []:
        err = check_rule(_rule(path, entry), value, path)
        if err:
            errors.append(err)
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        for name, sub in props.items():
            if name in value:
                errors.extend(rule_errors(sub, value[name], child_path(path, name)))
        extra = schema.get("additionalProperties")
        if isinstance(extra, Mapping):
            for key, item in value.items():
                if key not in props:
                    errors.extend(rule_errors(extra, item, index_path(path, key)))
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for i, item in enumerate(value):
            errors.extend(rule_errors(schema["items"], item, index_path(path, i)))
    return errors
