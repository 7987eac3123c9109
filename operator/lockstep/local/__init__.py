"""Local mode's own checks: a DatabaseMigration judged as the API server would judge it.

`lockstep apply -f` must accept exactly what a cluster accepts, so this package evaluates the
CRD's OpenAPI schema (`openapi`) and its CEL rules (`cel_rules`) in the API server's order
(`create_path`), words errors as the API server does (`field_errors`), and adds the built-in
rules for ConfigMaps and Secrets (`validation`). The unit tests use the same evaluator
(tests/support/crd_eval), and tests/e2e/test_local_parity.py compares its verdicts with a real
API server's.
"""
