"""Check DatabaseMigration objects against the CRD without a cluster.

Exists so that unit tests can mirror what the kube-apiserver does on create,
closely enough to trust, and so that the e2e suite can share the same cases:

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

The evaluator itself lives in the package, because local mode (`lockstep
apply -f`) validates with it too: `lockstep.local.field_errors`,
`lockstep.local.openapi`, `lockstep.local.cel_rules` and
`lockstep.local.create_path`. Here remain `cases` (the CRD and tests/data/
loaders) and `lint` (static checks of the schema itself). This package
exposes only what the tests use.
"""

from crd_eval.cases import (
    API_VERSION,
    KIND,
    InvalidCase,
    ValidCase,
    load_crd,
    load_invalid_cases,
    load_valid_cases,
    make_object,
    version_schema,
)
from crd_eval.lint import cost_problems, rule_reference_problems, structural_problems
from lockstep.local.cel_rules import Rule, compile_cel, evaluate_cel, iter_rules, rule_errors
from lockstep.local.create_path import validate
from lockstep.local.field_errors import FieldError
from lockstep.local.openapi import (
    apply_defaults,
    iter_schema,
    schema_errors,
    to_json_schema,
    unknown_fields,
)

__all__ = [
    "API_VERSION",
    "KIND",
    "FieldError",
    "InvalidCase",
    "Rule",
    "ValidCase",
    "apply_defaults",
    "compile_cel",
    "cost_problems",
    "evaluate_cel",
    "iter_rules",
    "iter_schema",
    "load_crd",
    "load_invalid_cases",
    "load_valid_cases",
    "make_object",
    "rule_errors",
    "rule_reference_problems",
    "schema_errors",
    "structural_problems",
    "to_json_schema",
    "unknown_fields",
    "validate",
    "version_schema",
]
