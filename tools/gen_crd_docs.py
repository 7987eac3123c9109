"""Generate docs/reference/crd.md from crds/databasemigrations.yaml.

    python tools/gen_crd_docs.py           # rewrite the doc
    python tools/gen_crd_docs.py --check   # exit 1 when the doc is stale

The CRD is the one source: every field's description, type, default and
constraints, the printer columns and the CEL validation rules come from it.
`render()` is pure, so the unit tests compare its output with the file.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
CRD_PATH = REPO_ROOT / "crds" / "databasemigrations.yaml"
DOC_PATH = REPO_ROOT / "docs" / "reference" / "crd.md"

Schema = Mapping[str, Any]

_SCALARS = ("string", "integer", "number", "boolean")


def load_crd(path: Path = CRD_PATH) -> dict[str, Any]:
    with path.open(encoding="utf-8") as f:
        crd = yaml.safe_load(f)
    if not isinstance(crd, dict):
        raise ValueError(f"{path}: not a YAML mapping")
    return crd


# --------------------------------------------------------------------------- text


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _escape(text: str) -> str:
    """Markdown-safe text: `<`/`>` escaped outside code spans, `|` escaped everywhere."""
    parts = text.split("`")
    for i in range(0, len(parts), 2):  # outside code spans
        parts[i] = parts[i].replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return "`".join(parts).replace("|", "\\|")


def _code(value: Any) -> str:
    text = value if isinstance(value, str) else yaml.safe_dump(value, default_flow_style=True)
    text = _one_line(str(text))
    fence = "``" if "`" in text else "`"
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _literal(value: Any) -> str:
    """A YAML literal as a user writes it (`head`, `3`, `false`, `"True"`)."""
    if isinstance(value, str):
        dumped = yaml.safe_dump(value, default_flow_style=True).strip()
        dumped = dumped.removesuffix("\n...").removesuffix("...").strip()
        return _code(dumped)
    if isinstance(value, bool):
        return _code("true" if value else "false")
    if isinstance(value, int | float):
        return _code(str(value))
    return _code(yaml.safe_dump(value, default_flow_style=True).strip())


# --------------------------------------------------------------------------- schema


def _type_name(schema: Schema) -> str:
    if schema.get("x-kubernetes-int-or-string"):
        return "int or string"
    kind = schema.get("type", "any")
    if kind == "array":
        items = schema.get("items") or {}
        return "[]" + _type_name(items)
    if kind == "object":
        extra = schema.get("additionalProperties")
        if isinstance(extra, Mapping) and "properties" not in schema:
            return f"map[string]{_type_name(extra)}"
        if schema.get("x-kubernetes-preserve-unknown-fields") and "properties" not in schema:
            return "object (free-form)"
        return "object"
    fmt = schema.get("format")
    return f"{kind} ({fmt})" if fmt and fmt not in ("int32", "int64", "double", "float") else kind


def _range(low: Any, high: Any, unit: str = "") -> str | None:
    if low is not None and high is not None:
        return f"{low} to {high}{unit}"
    if low is not None:
        return f"at least {low}{unit}"
    if high is not None:
        return f"at most {high}{unit}"
    return None


def _constraints(schema: Schema) -> list[str]:
    out: list[str] = []
    if "enum" in schema:
        out.append("one of " + ", ".join(_literal(v) for v in schema["enum"]))
    bounds = _range(schema.get("minimum"), schema.get("maximum"))
    if bounds:
        out.append(bounds)
    length = _range(schema.get("minLength"), schema.get("maxLength"), " characters")
    if length:
        out.append(length)
    if "pattern" in schema:
        out.append("matches " + _code(schema["pattern"]))
    items = _range(schema.get("minItems"), schema.get("maxItems"), " items")
    if items:
        out.append(items)
    if schema.get("x-kubernetes-list-type") == "map":
        keys = ", ".join(_code(k) for k in schema.get("x-kubernetes-list-map-keys") or [])
        out.append(f"unique by {keys}")
    elif schema.get("x-kubernetes-list-type") == "set":
        out.append("unique items")
    return out


def _children(schema: Schema, path: str) -> Iterator[tuple[str, Schema, bool]]:
    """(path, schema, required) of the documented fields below `schema`."""
    required = set(schema.get("required") or [])
    for name, sub in (schema.get("properties") or {}).items():
        yield f"{path}.{name}" if path else name, sub, name in required
    items = schema.get("items")
    if isinstance(items, Mapping) and items.get("type") not in _SCALARS:
        yield from _children(items, f"{path}[]")


def _rows(schema: Schema, path: str) -> Iterator[tuple[str, Schema, bool]]:
    for child_path, sub, required in _children(schema, path):
        yield child_path, sub, required
        yield from _rows(sub, child_path)


def _field_table(schema: Schema, path: str) -> list[str]:
    lines = [
        "| Field | Type | Default | Description |",
        "| --- | --- | --- | --- |",
    ]
    for field_path, sub, required in _rows(schema, path):
        name = _code(field_path) + (" **(required)**" if required else "")
        kind = "<br>".join([_escape(_type_name(sub)), *map(_escape, _constraints(sub))])
        default = _escape(_literal(sub["default"])) if "default" in sub else ""
        description = _escape(_one_line(sub.get("description", "")))
        lines.append(f"| {name} | {kind} | {default} | {description} |")
    return lines


def _iter_rules(schema: Schema, path: str = "") -> Iterator[tuple[str, Mapping[str, Any]]]:
    for rule in schema.get("x-kubernetes-validations") or []:
        yield path, rule
    for name, sub in (schema.get("properties") or {}).items():
        yield from _iter_rules(sub, f"{path}.{name}" if path else name)
    items = schema.get("items")
    if isinstance(items, Mapping):
        yield from _iter_rules(items, f"{path}[]")
    extra = schema.get("additionalProperties")
    if isinstance(extra, Mapping):
        yield from _iter_rules(extra, f"{path}{{}}")


def _rules_section(schema: Schema) -> list[str]:
    lines = [
        "## Validation rules",
        "",
        "Besides the types and constraints above, the API server checks these rules",
        "(CEL, `x-kubernetes-validations`) whenever a DatabaseMigration is created or",
        "changed, and rejects the change with the message shown. Defaults are filled",
        "in before the rules run.",
        "",
    ]
    for node, rule in _iter_rules(schema):
        field_path = rule.get("fieldPath", "")
        where = f"{node}{field_path}" if node else field_path.lstrip(".")
        message = _escape(_one_line(rule.get("message") or "failed rule"))
        on = f"on {_code(node)}" if node else "on the whole object"
        lines.append(f"- **{_code(where or '(object)')}**: {message}")
        lines.append("")
        lines.append(f"  Rule {on}: {_code(rule['rule'])}")
        lines.append("")
    return lines[:-1]


def render(crd: Mapping[str, Any]) -> str:
    """The reference doc of the CRD, as Markdown."""
    spec = crd["spec"]
    names = spec["names"]
    lines: list[str] = [
        "<!-- Generated by tools/gen_crd_docs.py from crds/databasemigrations.yaml."
        " Do not edit: change the CRD and run `python tools/gen_crd_docs.py`. -->",
        "",
        f"# {names['kind']} reference",
        "",
    ]
    for version in spec["versions"]:
        schema = version["schema"]["openAPIV3Schema"]
        props = schema["properties"]
        subresources = ", ".join(sorted(version.get("subresources") or {})) or "none"
        lines += [
            _escape(_one_line(schema.get("description", ""))),
            "",
            "| | |",
            "| --- | --- |",
            f"| API version | {_code(spec['group'] + '/' + version['name'])} |",
            f"| Kind | {_code(names['kind'])} (list: {_code(names['listKind'])}) |",
            f"| Scope | {spec['scope']} |",
            f"| Plural, singular | {_code(names['plural'])}, {_code(names['singular'])} |",
            f"| Short names | {', '.join(_code(n) for n in names.get('shortNames', []))} |",
            f"| Categories | {', '.join(_code(n) for n in names.get('categories', []))} |",
            f"| Subresources | {subresources} |",
            f"| Served | {_literal(version['served'])} |",
            f"| Storage version | {_literal(version['storage'])} |",
            "",
            "## `kubectl get` columns",
            "",
            "| Column | Value | Description |",
            "| --- | --- | --- |",
        ]
        for col in version.get("additionalPrinterColumns") or []:
            wide = " (only with `-o wide`)" if col.get("priority", 0) > 0 else ""
            desc = _escape(_one_line(col.get("description", "")))
            lines.append(f"| {col['name']} | {_escape(_code(col['jsonPath']))}{wide} | {desc} |")
        lines += [
            "",
            "## Spec",
            "",
            _escape(_one_line(props["spec"].get("description", ""))),
            "",
            *_field_table(props["spec"], "spec"),
            "",
            *_rules_section(schema),
            "",
            "## Status",
            "",
            _escape(_one_line(props["status"].get("description", ""))),
            "",
            *_field_table(props["status"], "status"),
            "",
        ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="exit 1 when the doc is stale")
    parser.add_argument("--crd", type=Path, default=CRD_PATH)
    parser.add_argument("--out", type=Path, default=DOC_PATH)
    args = parser.parse_args(argv)
    text = render(load_crd(args.crd))
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
        if current != text:
            print(f"{args.out} is stale: run python tools/gen_crd_docs.py", file=sys.stderr)
            return 1
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
