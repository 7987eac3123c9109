"""Local mode and the real API server give every document the same verdict.

Each document goes to the API server as a server-side dry-run create with strict field
validation (what `kubectl apply` does) and to local mode's validation; accept/reject must agree.
The documents: every case of tests/data/invalid_specs.yaml and valid_specs.yaml, and a
derandomized sample of the fuzz test's hostile DatabaseMigrations and ConfigMaps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

import crd_eval
from hostile_input import hostile_documents
from lockstep import constants
from lockstep.local import validation
from testbed import kubeapi

pytestmark = pytest.mark.e2e

STRICT_DRY_RUN = {"dryRun": "All", "fieldValidation": "Strict"}
COUNTS: dict[str, int] = {"tried": 0, "mismatches": 0}
MISMATCHES: list[str] = []


def server_accepts(api: kubeapi.KubeAPI, namespace: str, document: Any) -> tuple[bool, str]:
    """Dry-run create `document` in `namespace`: (accepted, the server's message).

    Raw JSON, not the official client, which validates (and so refuses) some bodies itself.
    """
    kind = document.get("kind") if isinstance(document, dict) else None
    if kind == "ConfigMap":
        path = f"/api/v1/namespaces/{namespace}/configmaps"
    else:
        path = (
            f"/apis/{constants.GROUP}/{constants.VERSION}/namespaces/{namespace}/databasemigrations"
        )
    try:
        api.request("POST", path, query=STRICT_DRY_RUN, body=document)
    except kubeapi.ApiError as error:
        if error.status >= 500:
            raise
        return False, error.message[:300]
    return True, ""


def local_accepts(document: Any) -> tuple[bool, str]:
    """Local mode's verdict on a file holding `document` (one object, or a ConfigMap)."""
    if not isinstance(document, dict):
        return False, "not an object"
    checked = validation.check(document)
    wanted_kind = document.get("kind") in (constants.KIND, "ConfigMap")
    return not checked.problems and wanted_kind, "; ".join(checked.problems)


def in_namespace(document: Any, namespace: str) -> Any:
    """The document placed in the test's namespace (the server refuses any other)."""
    if isinstance(document, dict) and isinstance(document.get("metadata"), dict):
        document = {**document, "metadata": {**document["metadata"], "namespace": namespace}}
    return document


def compare(api: kubeapi.KubeAPI, namespace: str, name: str, document: Any) -> None:
    document = in_namespace(document, namespace)
    COUNTS["tried"] += 1
    server, server_says = server_accepts(api, namespace, document)
    local, local_says = local_accepts(document)
    if server != local:
        COUNTS["mismatches"] += 1
        MISMATCHES.append(
            f"{name}: server {'accepts' if server else 'refuses'} ({server_says}), "
            f"local {'accepts' if local else 'refuses'} ({local_says}): {document!r}"[:900]
        )


@pytest.fixture
def parity(kubeconfig: Path, namespace: str, crds: None) -> tuple[kubeapi.KubeAPI, str]:
    return kubeapi.KubeAPI(kubeconfig), namespace


def test_every_shared_case_gets_the_same_verdict(parity: tuple[kubeapi.KubeAPI, str]) -> None:
    api, namespace = parity
    invalid, valid = crd_eval.load_invalid_cases(), crd_eval.load_valid_cases()
    for case in [*invalid, *valid]:
        compare(api, namespace, case.name, case.object)
    assert not MISMATCHES, "\n".join(MISMATCHES)


@settings(
    max_examples=300,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(documents=hostile_documents(engine="sqlite"))
def test_fuzzed_documents_get_the_same_verdict(
    parity: tuple[kubeapi.KubeAPI, str], documents: list[Any]
) -> None:
    api, namespace = parity
    for number, document in enumerate(documents):
        compare(api, namespace, f"fuzzed document {number}", document)
    assert not MISMATCHES, "\n".join(MISMATCHES[:5])


def test_parity_counts(capsys: pytest.CaptureFixture[str]) -> None:
    with capsys.disabled():
        print(f"\nlocal/API-server parity: {COUNTS}")
    assert COUNTS["mismatches"] == 0
