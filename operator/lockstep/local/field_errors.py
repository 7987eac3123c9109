"""The error records and field paths every local validation check reports in.

Exists so that the schema checks (`openapi`) and the CEL rules (`rules`)
word their errors the same way the apiserver does, from one definition:
`FieldError`, the k8s.io/apimachinery error kinds and their wording, and how
field paths (`spec.env[0].name`) and values (`"abc"`, `null`) are printed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

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


def child_path(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def index_path(path: str, i: int | str) -> str:
    return f"{path}[{i}]"


def value_text(value: Any) -> str:
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
