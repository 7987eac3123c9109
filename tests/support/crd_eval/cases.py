"""The CRD and the shared example objects in tests/data/, loaded for the checks.

Exists because the unit tests (against crd_eval) and the e2e suite (against a
real kube-apiserver) must use the very same CRD file and the very same valid
and invalid objects; this is the only I/O in crd_eval.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[3]
CRD_PATH = REPO_ROOT / "crds" / "databasemigrations.yaml"
DATA_DIR = REPO_ROOT / "tests" / "data"
INVALID_SPECS_PATH = DATA_DIR / "invalid_specs.yaml"
VALID_SPECS_PATH = DATA_DIR / "valid_specs.yaml"

API_VERSION = "lockstep.dev/v1alpha1"
KIND = "DatabaseMigration"


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
