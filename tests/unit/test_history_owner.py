"""Whose history a run keeps (spec_history.history_owner): the migration set, stable across the
renames GitOps tools make (kustomize's configMapGenerator gives each edit a new name suffix)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from lockstep import spec_history
from lockstep.tools import version_table


def _owner(config_map: str, namespace: str = "shop", name: str = "shop") -> str:
    return spec_history.history_owner(
        namespace, name, {"source": {"configMapRef": {"name": config_map}}}
    )


def test_kustomize_hash_suffixes_of_one_set_name_one_history() -> None:
    first, edited = _owner("shop-migrations-5k8m2f9t7c"), _owner("shop-migrations-b9tdh6c4g2")
    assert first == edited == "ConfigMap shop/shop-migrations"
    assert version_table.sql_history_name(first) == version_table.sql_history_name(
        _owner("shop-migrations")
    )


@pytest.mark.parametrize(
    "config_map",
    [
        "shop-migrations",
        "shop-migrations-v2",
        "shop-2024051512",  # 0 and 1 never appear in kustomize's suffix
        "shop-5k8m2f9t7",  # nine characters
        "shop-5k8m2f9t7cc",  # eleven
        "shop-5k8m2f9t7a",  # a vowel
        "shop_5k8m2f9t7c",  # no dash
    ],
)
def test_names_without_a_kustomize_suffix_are_kept_whole(config_map: str) -> None:
    assert _owner(config_map) == f"ConfigMap shop/{config_map}"


def test_two_sets_and_two_namespaces_stay_apart() -> None:
    assert _owner("billing-migrations-5k8m2f9t7c") != _owner("shop-migrations-5k8m2f9t7c")
    assert _owner("m-5k8m2f9t7c", namespace="a") != _owner("m-5k8m2f9t7c", namespace="b")


def test_a_tool_in_an_image_keeps_the_resource_as_owner() -> None:
    owner = spec_history.history_owner("shop", "shop-expand", {"tool": "flyway"})
    assert owner == "DatabaseMigration shop/shop-expand"


def test_the_suffix_pattern_matches_what_kustomize_generates(tmp_path: Path) -> None:
    """Real kustomize (kubectl's) names a generated ConfigMap; the set name drops its suffix."""
    kubectl = _kubectl()
    names = []
    for content in ("CREATE TABLE a (id int);", "CREATE TABLE b (id int);", "x" * 300):
        (tmp_path / "V1__a.sql").write_text(content)
        (tmp_path / "kustomization.yaml").write_text(
            "configMapGenerator:\n- name: shop-migrations\n  files: [V1__a.sql]\n"
        )
        rendered = subprocess.run(
            [kubectl, "kustomize", str(tmp_path)], check=True, capture_output=True, text=True
        ).stdout
        name = next(
            line.split(":", 1)[1].strip()
            for line in rendered.splitlines()
            if line.strip().startswith("name: shop-migrations-")
        )
        names.append(name)
        assert spec_history.migration_set_name(name) == "shop-migrations", name
    assert len(set(names)) == 3, names


def _kubectl() -> str:
    found = shutil.which("kubectl")
    cached = Path.home() / ".cache/lockstep/k8s"
    candidates = sorted(cached.glob("*/bin/kubectl")) if cached.is_dir() else []
    if found:
        return found
    if candidates:
        return str(candidates[-1])
    pytest.skip("no kubectl (with its built-in kustomize) here: `make k8s-bin` builds one")
