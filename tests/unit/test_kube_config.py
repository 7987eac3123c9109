"""`kube.load_config` outside a pod and without a kubeconfig: one clear sentence, no traceback
(what `lockstep operator` and `lockstep wait` print when started outside a cluster)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lockstep import kube


def test_no_service_account_and_no_kubeconfig_says_what_was_tried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    with pytest.raises(kube.NoClusterConfig) as raised:
        kube.load_config()
    message = str(raised.value)
    assert "not in a pod" in message
    assert str(tmp_path / "missing") in message
    assert "--kubeconfig or $KUBECONFIG" in message


def test_a_pod_without_its_token_is_told_apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    with pytest.raises(kube.NoClusterConfig, match="in a pod, but"):
        kube.load_config()


def test_an_explicit_kubeconfig_that_is_not_one_is_named(tmp_path: Path) -> None:
    broken = tmp_path / "kubeconfig"
    broken.write_text("not: a kubeconfig\n")
    with pytest.raises(kube.NoClusterConfig, match=str(broken)):
        kube.load_config(str(broken))
