"""The apiserver's create path: defaults, then the schema, then the CEL rules.

Exists to chain `openapi` and `rules` in the apiserver's order, including its
one shortcut: after a "blocking" schema error the rules are not run.
"""

from __future__ import annotations

from typing import Any

from lockstep.local.cel_rules import rule_errors
from lockstep.local.field_errors import (
    INVALID,
    NOT_SUPPORTED,
    REQUIRED,
    TOO_LONG,
    TOO_MANY,
    TYPE_INVALID,
    FieldError,
    Schema,
)
from lockstep.local.openapi import apply_defaults, schema_errors

# Errors after which the apiserver does not run the CEL rules.
BLOCKING = frozenset({NOT_SUPPORTED, REQUIRED, TOO_LONG, TOO_MANY, TYPE_INVALID})
RULES_SKIPPED = (
    "some validation rules were not checked because the object was invalid; "
    "correct the existing errors to complete validation"
)


def validate(schema: Schema, obj: Any) -> list[FieldError]:
    """Everything the apiserver would say about creating `obj` (see the package doc)."""
    defaulted = apply_defaults(schema, obj)
    errors = schema_errors(schema, defaulted)
    if any(e.kind in BLOCKING for e in errors):
        return [*errors, FieldError("", INVALID, f"null: {RULES_SKIPPED}")]
    return errors + rule_errors(schema, defaulted)
