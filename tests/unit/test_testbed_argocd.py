"""How the test bed configures Argo CD's controller and repo-server (testbed.argocd): as the
kubelet would, from the install manifest's env and the ConfigMaps a user writes, with Lockstep's
health check under the key users put it (deploy/argocd-health). Runs without Argo CD."""

from __future__ import annotations

from pathlib import Path

import yaml

from testbed import argocd

REPO = Path(__file__).resolve().parents[2]

MANIFEST = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "argocd-repo-server"},
    "spec": {
        "template": {
            "spec": {
                "containers": [
                    {
                        "name": "argocd-repo-server",
                        "env": [
                            {
                                "name": "ARGOCD_RECONCILIATION_TIMEOUT",
                                "valueFrom": {
                                    "configMapKeyRef": {
                                        "name": "argocd-cm",
                                        "key": "timeout.reconciliation",
                                        "optional": True,
                                    }
                                },
                            },
                            {
                                "name": "REDIS_SERVER",
                                "valueFrom": {
                                    "configMapKeyRef": {
                                        "name": "argocd-cmd-params-cm",
                                        "key": "redis.server",
                                        "optional": True,
                                    }
                                },
                            },
                            {
                                "name": "ARGOCD_TLS_CIPHERS",
                                "valueFrom": {
                                    "configMapKeyRef": {
                                        "name": "argocd-cmd-params-cm",
                                        "key": "reposerver.tls.ciphers",
                                        "optional": True,
                                    }
                                },
                            },
                            {"name": "HELM_CACHE_HOME", "value": "/helm-working-dir"},
                            {"name": "ARGOCD_CONTROLLER_REPLICAS", "value": "1"},
                        ],
                    }
                ]
            }
        }
    },
}


def test_the_env_comes_from_the_config_maps_as_the_kubelet_sets_it(tmp_path: Path) -> None:
    manifest = tmp_path / "repo-server.yaml"
    manifest.write_text(yaml.safe_dump(MANIFEST))
    maps = argocd.config_maps("127.0.0.1:6400", "127.0.0.1:8100")
    env = argocd.manifest_env(manifest, maps, tmp_path / "state")
    assert env == {
        "ARGOCD_RECONCILIATION_TIMEOUT": "5s",  # argocd-cm timeout.reconciliation
        "REDIS_SERVER": "127.0.0.1:6400",  # argocd-cmd-params-cm redis.server
        "HELM_CACHE_HOME": str(tmp_path / "state" / "helm-working-dir"),  # not the host's /
        "ARGOCD_CONTROLLER_REPLICAS": "1",
    }  # reposerver.tls.ciphers is not set: optional, absent, as in a pod


def test_lockstep_health_check_is_in_argocd_cm_under_the_key_users_use() -> None:
    component = yaml.safe_load(
        (REPO / "deploy" / "argocd-health" / "kustomization.yaml").read_text()
    )
    (files,) = [g["files"] for g in component["configMapGenerator"] if g["name"] == "argocd-cm"]
    key, _, file_name = files[0].partition("=")
    assert key == argocd.HEALTH_KEY
    maps = argocd.config_maps("127.0.0.1:1", "127.0.0.1:2")
    expected = (REPO / "deploy" / "argocd-health" / file_name).read_text()
    assert maps["argocd-cm"][argocd.HEALTH_KEY] == expected


def test_the_settings_include_the_default_project_argocd_server_would_create() -> None:
    docs = argocd.settings_documents(argocd.config_maps("127.0.0.1:1", "127.0.0.1:2"))
    kinds = [(d["kind"], d["metadata"]["name"]) for d in docs]
    assert kinds == [
        ("Namespace", "argocd"),
        ("ConfigMap", "argocd-cm"),
        ("ConfigMap", "argocd-cmd-params-cm"),
        ("Secret", "argocd-secret"),
        ("AppProject", "default"),
    ]
    project = docs[-1]["spec"]
    assert project["sourceRepos"] == ["*"]
    assert project["destinations"] == [{"server": "*", "namespace": "*"}]
