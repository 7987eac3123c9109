"""Check DatabaseMigration objects against the CRD without a cluster.

Pure helpers (no I/O except the `load_*` functions) that mirror what the
kube-apiserver does on create, closely enough for unit tests:

1. `apply_defaults` fills `default`s into the object (the apiserver defaults
   before it validates, so CEL rules see defaulted values);
2. `schema_errors` checks the OpenAPI v3 structural schema with `jsonschema`
   (after `to_json_schema` converted it) plus the `x-kubernetes-list-type`
   invariants, and words each error as the apiserver does;
3. `rule_errors` evaluates every `x-kubernetes-validations` rule with
   cel-python, `self` bound to the value at the rule's node;
4. `validate` chains the three and, like the apiserver, skips the CEL rules
   when the schema found a "blocking" error (unsupported enum value, missing
   required field, too long, too many items, wrong type).

Also here: `structural_problems` (is the schema structural, documented and
CEL-cost-safe?) and the loaders of the shared data files in `tests/data/`.

Known gaps against the real apiserver: no CEL type checking at compile time
(`rule_reference_problems` checks the field names a rule uses instead), no CEL
cost estimation (`structural_problems` checks the bounds the estimate depends
on), no `oldSelf` (transition rules), no pruning of unknown fields
(`unknown_fields` reports them), no ObjectMeta validation.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import celpy
import jsonschema
import yaml
from celpy import celtypes
from celpy.adapter import json_to_cel
from celpy.evaluation import CELEvalError

REPO_ROOT = Path(__file__).resolve().parents[2]
CRD_PATH = REPO_ROOT / "crds" / "databasemigrations.yaml"
DATA_DIR = REPO_ROOT / "tests" / "data"
INVALID_SPECS_PATH = DATA_DIR / "invalid_specs.yaml"
VALID_SPECS_PATH = DATA_DIR / "valid_specs.yaml"

API_VERSION = "lockstep.dev/v1alpha1"
KIND = "DatabaseMigration"

Schema = Mapping[str, Any]

# Error kinds: k8s.io/apimachinery's field.ErrorType names, and how they are worded.
REQUIRED = "FieldValueRequired"
FORBIDDEN = "FieldValueForbidden"
INVALID = "FieldValueInvalid"
NOT_SUPPORTED = "FieldValueNotSupported"
DUPLICATE = "FieldValueDuplicate"
TOO_LONG = "FieldValueTooLong"
TOO_MANY = "FieldValueTooMany"
TYPE_INVALID = "FieldValueTypeInvalid"
WORDS = {
    REQUIRED: "Required value",
    FORBIDDEN: "Forbidden",
    INVALID: "Invalid value",
    NOT_SUPPORTED: "Unsupported value",
    DUPLICATE: "Duplicate value",
    TOO_LONG: "Too long",
    TOO_MANY: "Too many",
    TYPE_INVALID: "Invalid value",
}

# Errors after which the apiserver does not run the CEL rules.
BLOCKING = frozenset({NOT_SUPPORTED, REQUIRED, TOO_LONG, TOO_MANY, TYPE_INVALID})
RULES_SKIPPED = (
    "some validation rules were not checked because the object was invalid; "
    "correct the existing errors to complete validation"
)

# The `reason`s a rule may give (none means FieldValueInvalid).
_REASONS = {
    None: INVALID,
    INVALID: INVALID,
    REQUIRED: REQUIRED,
    FORBIDDEN: FORBIDDEN,
    DUPLICATE: DUPLICATE,
}


@dataclass(frozen=True)
class FieldError:
    """One validation error, as the apiserver reports it: `<field>: <kind>: <detail>`."""

    field: str
    kind: str
    detail: str = ""
    rule: str | None = None  # the CEL rule that failed, for errors from x-kubernetes-validations

    @property
    def from_rule(self) -> bool:
        return self.rule is not None

    def __str__(self) -> str:
        where = self.field or "<nil>"
        word = WORDS[self.kind]
        return f"{where}: {word}: {self.detail}" if self.detail else f"{where}: {word}"


# --------------------------------------------------------------------------- loading


def load_crd(path: Path = CRD_PATH) -> dict[str, Any]:
    with path.open(encoding="utf-8") as f:
        crd = yaml.safe_load(f)
    assert isinstance(crd, dict)
    return crd


def version_schema(crd: Mapping[str, Any], version: str = "v1alpha1") -> dict[str, Any]:
    """The openAPIV3Schema of one version of the CRD."""
    for v in crd["spec"]["versions"]:
        if v["name"] == version:
            schema = v["schema"]["openAPIV3Schema"]
            assert isinstance(schema, dict)
            return schema
    raise KeyError(version)


def make_object(name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    """A whole DatabaseMigration named `name` with `spec`."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name},
        "spec": copy.deepcopy(dict(spec)),
    }


@dataclass(frozen=True)
class InvalidCase:
    """A DatabaseMigration the CRD must reject (one entry of invalid_specs.yaml)."""

    name: str
    object: dict[str, Any]
    field: str
    message: str
    rule: bool


@dataclass(frozen=True)
class ValidCase:
    """A DatabaseMigration the CRD must accept (one entry of valid_specs.yaml)."""

    name: str
    object: dict[str, Any]
    description: str = ""


def _case_object(entry: Mapping[str, Any]) -> dict[str, Any]:
    if "object" in entry:
        obj = copy.deepcopy(entry["object"])
        assert isinstance(obj, dict)
        return obj
    return make_object(entry["name"], entry["spec"])


def load_invalid_cases(path: Path = INVALID_SPECS_PATH) -> list[InvalidCase]:
    with path.open(encoding="utf-8") as f:
        entries = yaml.safe_load(f)
    return [
        InvalidCase(
            name=e["name"],
            object=_case_object(e),
            field=e["expect"]["field"],
            message=e["expect"]["message"],
            rule=bool(e["expect"]["rule"]),
        )
        for e in entries
    ]


def load_valid_cases(path: Path = VALID_SPECS_PATH) -> list[ValidCase]:
    with path.open(encoding="utf-8") as f:
        entries = yaml.safe_load(f)
    return [
        ValidCase(name=e["name"], object=_case_object(e), description=e.get("description", ""))
        for e in entries
    ]


# --------------------------------------------------------------------------- paths


def _child(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _index(path: str, i: int | str) -> str:
    return f"{path}[{i}]"


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
            out = _index(out, int(index))
        else:
            out = _child(out, name if name is not None else quoted)
        pos = m.end()
    return out


def _value_text(value: Any) -> str:
    """A value as the apiserver prints it in `Invalid value: ...` (Go %#v, roughly)."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


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
        yield from iter_schema(sub, _child(path, name))
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
        path = _index(path, step) if isinstance(step, int) else _child(path, str(step))
    kw = err.validator
    inst = err.instance
    val = err.validator_value
    if kw == "required":
        missing = [p for p in val if isinstance(inst, dict) and p not in inst]
        return [FieldError(_child(path, p), REQUIRED) for p in missing]
    if kw == "enum":
        supported = ", ".join(_value_text(v) for v in val)
        detail = f"{_value_text(inst)}: supported values: {supported}"
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
    body = f"{_value_text(inst)}: {path} in body"
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
    return [FieldError(path, INVALID, f"{_value_text(inst)}: {err.message}")]


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
                errors.extend(list_type_errors(sub, value[name], _child(path, name)))
    elif isinstance(value, list):
        kind = schema.get("x-kubernetes-list-type")
        seen: set[str] = set()
        for i, item in enumerate(value):
            if kind == "set":
                key = json.dumps(item, sort_keys=True)
                shown = _value_text(item)
            elif kind == "map" and isinstance(item, dict):
                keys = schema.get("x-kubernetes-list-map-keys") or []
                ident = {k: item.get(k) for k in keys}
                key = json.dumps(ident, sort_keys=True)
                shown = json.dumps(ident, separators=(",", ":"), sort_keys=True)
            else:
                key = ""
            if key and key in seen:
                errors.append(FieldError(_index(path, i), DUPLICATE, shown))
            seen.add(key)
            if isinstance(schema.get("items"), Mapping):
                errors.extend(list_type_errors(schema["items"], item, _index(path, i)))
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
            p = _child(path, key)
            if key in props:
                if not (path == "" and key == "metadata"):
                    found.extend(unknown_fields(props[key], item, p))
            elif isinstance(extra, Mapping):
                found.extend(unknown_fields(extra, item, _index(path, key)))
            elif extra is not True:
                found.append(p)
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for i, item in enumerate(value):
            found.extend(unknown_fields(schema["items"], item, _index(path, i)))
    return found


# --------------------------------------------------------------------------- CEL


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
        message = f"{_value_text(self_value)}: {message}"
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
                errors.extend(rule_errors(sub, value[name], _child(path, name)))
        extra = schema.get("additionalProperties")
        if isinstance(extra, Mapping):
            for key, item in value.items():
                if key not in props:
                    errors.extend(rule_errors(extra, item, _index(path, key)))
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for i, item in enumerate(value):
            errors.extend(rule_errors(schema["items"], item, _index(path, i)))
    return errors


def validate(schema: Schema, obj: Any) -> list[FieldError]:
    """Everything the apiserver would say about creating `obj` (see the module doc)."""
    defaulted = apply_defaults(schema, obj)
    errors = schema_errors(schema, defaulted)
    if any(e.kind in BLOCKING for e in errors):
        return [*errors, FieldError("", INVALID, f"null: {RULES_SKIPPED}")]
    return errors + rule_errors(schema, defaulted)


# --------------------------------------------------------------------------- static checks

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
