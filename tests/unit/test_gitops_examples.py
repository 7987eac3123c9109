"""examples/gitops: Flux Kustomizations and an Argo CD Application that migrate before they roll
out. Offline checks: every file parses, required fields, names and paths consistent, waves and
dependencies in the right order, the DatabaseMigration valid against the CRD (schema and CEL)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import crd_eval

REPO = Path(__file__).resolve().parents[2]
GITOPS = REPO / "examples" / "gitops"
WAVE = "argocd.argoproj.io/sync-wave"


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def objects(folder: Path) -> list[dict[str, Any]]:
    return [d for p in sorted(folder.glob("*.yaml")) for d in documents(p)]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d.get("kind") == kind]


def kustomize(folder: Path) -> Iterator[dict[str, Any]]:
    """What `kustomize build` emits, for the features these examples use: resources (files and
    directories), configMapGenerator, namespace and commonAnnotations."""
    config = yaml.safe_load((folder / "kustomization.yaml").read_text())
    assert config["kind"] == "Kustomization"
    emitted: list[dict[str, Any]] = []
    for entry in config.get("resources", []):
        target = (folder / entry).resolve()
        assert target.exists(), f"{folder}: resource {entry} does not exist"
        emitted += list(kustomize(target)) if target.is_dir() else documents(target)
    for generator in config.get("configMapGenerator", []):
        data = {}
        for file in generator["files"]:
            path = folder / file
            assert path.is_file(), f"{folder}: generator file {file} does not exist"
            data[path.name] = path.read_text()
        assert _hash_reaches_the_migration(folder, config), (
            f"{folder}: the generated ConfigMap's hash suffix must reach "
            "DatabaseMigration.spec.source.configMapRef (a nameReference configuration), or a "
            "new SQL file leaves the generation unchanged and GitOps tools do not wait for it"
        )
        emitted.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": generator["name"]},
                "data": data,
            }
        )
    for obj in emitted:
        metadata = obj.setdefault("metadata", {})
        if "namespace" in config:
            metadata["namespace"] = config["namespace"]
        if config.get("commonAnnotations"):
            metadata["annotations"] = {
                **metadata.get("annotations", {}),
                **config["commonAnnotations"],
            }
    return iter(emitted)


def _hash_reaches_the_migration(folder: Path, config: dict[str, Any]) -> bool:
    """The generator keeps kustomize's hash suffix and a `configurations` file names the
    DatabaseMigration's configMapRef as a reference to the ConfigMap (the real kustomize then
    writes the suffixed name there; tests/e2e/test_gitops_sync.py and test_flux.py render it)."""
    if config.get("generatorOptions", {}).get("disableNameSuffixHash", False):
        return False
    for name in config.get("configurations", []):
        for reference in yaml.safe_load((folder / name).read_text()).get("nameReference", []):
            if reference.get("kind") != "ConfigMap":
                continue
            for field in reference.get("fieldSpecs", []):
                if (field.get("kind"), field.get("path")) == (
                    "DatabaseMigration",
                    "spec/source/configMapRef/name",
                ):
                    return True
    return False


def test_every_yaml_parses_and_every_object_has_api_version_kind_name() -> None:
    files = sorted(GITOPS.rglob("*.yaml"))
    assert len(files) >= 8
    for path in files:
        if path.name == "kustomizeconfig.yaml":  # a transformer configuration, not an object
            continue
        for doc in documents(path):
            assert doc.get("apiVersion") and doc.get("kind"), path
            if doc["kind"] != "Kustomization" or "kustomize.toolkit" in doc["apiVersion"]:
                assert doc["metadata"]["name"], path


def test_flux_kustomizations_wait_and_the_app_depends_on_the_migration() -> None:
    flux = objects(GITOPS / "flux")
    (source,) = by_kind(flux, "GitRepository")
    assert source["apiVersion"] == "source.toolkit.fluxcd.io/v1"
    assert source["spec"]["url"].startswith("https://") and source["spec"]["ref"]["branch"]
    kustomizations = {k["metadata"]["name"]: k for k in by_kind(flux, "Kustomization")}
    assert set(kustomizations) == {"shop-migration", "shop-app"}
    for name, k in kustomizations.items():
        spec = k["spec"]
        assert k["apiVersion"] == "kustomize.toolkit.fluxcd.io/v1", name
        assert k["metadata"]["namespace"] == source["metadata"]["namespace"], name
        assert spec["sourceRef"] == {"kind": "GitRepository", "name": source["metadata"]["name"]}
        assert spec["wait"] is True, name
        assert spec["interval"] and spec["timeout"] and spec["prune"] is True, name
        path = REPO / spec["path"]
        assert spec["path"].startswith("./") and (path / "kustomization.yaml").is_file(), name
    app, migration = kustomizations["shop-app"], kustomizations["shop-migration"]
    assert app["spec"]["dependsOn"] == [{"name": "shop-migration"}]
    assert "dependsOn" not in migration["spec"]
    assert (REPO / migration["spec"]["path"]).resolve() == GITOPS / "migration"
    assert (REPO / app["spec"]["path"]).resolve() == GITOPS / "app"


def _minutes(duration: str) -> float:
    units = {"s": 1 / 60, "m": 1, "h": 60}
    return float(duration[:-1]) * units[duration[-1]]


def test_flux_waits_longer_than_a_migration_with_retries_may_take() -> None:
    migration = next(
        k for k in objects(GITOPS / "flux") if k["metadata"]["name"] == "shop-migration"
    )
    assert _minutes(migration["spec"]["timeout"]) >= 30


def test_argocd_application_syncs_the_migration_a_wave_before_the_app() -> None:
    (app,) = documents(GITOPS / "argocd" / "application.yaml")
    assert app["apiVersion"] == "argoproj.io/v1alpha1" and app["kind"] == "Application"
    spec = app["spec"]
    assert spec["project"] and spec["destination"]["server"] and spec["destination"]["namespace"]
    assert spec["source"]["repoURL"].startswith("https://") and spec["source"]["targetRevision"]
    path = REPO / spec["source"]["path"]
    assert (path / "kustomization.yaml").is_file()
    rendered = list(kustomize(path))
    waves = {
        (o["kind"], o["metadata"]["name"]): int(o["metadata"]["annotations"][WAVE])
        for o in rendered
    }
    assert waves == {
        ("ConfigMap", "shop-migrations"): -1,
        ("DatabaseMigration", "shop"): -1,
        ("Deployment", "shop"): 0,
    }
    namespaces = {o["metadata"]["namespace"] for o in rendered}
    assert namespaces == {spec["destination"]["namespace"]}
    assert "CreateNamespace=true" in spec["syncPolicy"]["syncOptions"]


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    return list(kustomize(GITOPS / "argocd" / "shop"))


def test_names_line_up(rendered: list[dict[str, Any]]) -> None:
    (dbm,) = by_kind(rendered, "DatabaseMigration")
    (config_map,) = by_kind(rendered, "ConfigMap")
    (deployment,) = by_kind(rendered, "Deployment")
    assert dbm["spec"]["source"]["configMapRef"]["name"] == config_map["metadata"]["name"]
    assert sorted(config_map["data"]) == ["V1__create_customers.sql", "V2__create_orders.sql"]
    template = deployment["spec"]["template"]
    assert template["metadata"]["labels"]["lockstep.dev/wait-for"] == dbm["metadata"]["name"]
    assert (
        deployment["spec"]["selector"]["matchLabels"].items()
        <= template["metadata"]["labels"].items()
    )
    secret = dbm["spec"]["database"]["urlSecretRef"]["name"]
    used = [
        e["valueFrom"]["secretKeyRef"]["name"]
        for c in template["spec"]["containers"]
        for e in c.get("env", [])
    ]
    assert used == [secret]
    assert not by_kind(rendered, "Secret"), "no Secret in git"
    assert f"create secret generic {secret}" in (GITOPS / "README.md").read_text()


def test_the_database_migration_is_valid_for_the_crd(rendered: list[dict[str, Any]]) -> None:
    (dbm,) = by_kind(rendered, "DatabaseMigration")
    schema = crd_eval.version_schema(crd_eval.load_crd())
    defaulted = crd_eval.apply_defaults(schema, dbm)
    assert crd_eval.validate(schema, defaulted) == []
    assert crd_eval.unknown_fields(schema, dbm) == []
    assert dbm["apiVersion"] == crd_eval.API_VERSION


def test_readme_names_every_file_folder() -> None:
    readme = (GITOPS / "README.md").read_text()
    for folder in ("migration/", "app/", "flux/", "argocd/"):
        assert f"`{folder}`" in readme, folder
