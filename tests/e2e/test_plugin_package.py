"""The kubectl plugin on its own: built by tools/build_plugin.py, run by a bare python3 against
the real control plane, and its krew manifest checked by krew's own validator, which installs the
archive from a loopback HTTP server as krew would from a release."""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

import build_plugin
from testbed import kubetest
from testbed.controlplane import components
from testbed.kubetest import quickstart_documents

pytestmark = pytest.mark.e2e

# The interpreter the venv was made from: no Kubernetes client, no Lockstep installed.
BARE_PYTHON = Path(sys.base_prefix) / "bin" / "python3"


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, Path], str]]:
    """A build of the plugin, served over HTTP as a release page would serve it."""
    out = tmp_path_factory.mktemp("plugin")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(out))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield build_plugin.build(out, release_url=url), url
    finally:
        server.shutdown()


def test_the_standalone_plugin_runs_on_a_bare_python(
    release: tuple[dict[str, Path], str],
    k8s: client.ApiClient,
    namespace: str,
    kubeconfig: Path,
    pg_url: str,
    operator: object,
) -> None:
    built, _url = release
    assert built["executable"].stat().st_size < 8 * 1024 * 1024
    no_client = subprocess.run(
        [str(BARE_PYTHON), "-I", "-c", "import kubernetes"], capture_output=True, check=False
    )
    assert no_client.returncode != 0, "the bare python3 must not have the Kubernetes client"
    kubetest.create_objects(k8s, namespace, quickstart_documents(pg_url))
    kubetest.wait_for_condition(k8s, namespace, "shop", "Ready", reason="Succeeded")
    env = {"PATH": os.environ["PATH"], "HOME": str(built["executable"].parent)}
    result = subprocess.run(
        [str(BARE_PYTHON), "-I", str(built["executable"]), "status", "-n", namespace],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env={**env, "KUBECONFIG": str(kubeconfig)},
    )
    assert result.returncode == 0, result.stderr
    (row,) = [line for line in result.stdout.splitlines() if line.startswith("shop")]
    assert "Ready" in row or "Succeeded" in row, result.stdout


def test_krews_validator_installs_the_archive_the_manifest_names(
    release: tuple[dict[str, Path], str], tmp_path: Path
) -> None:
    built, url = release
    manifest = built["manifest"].read_text()
    assert f"uri: {url}/kubectl-lockstep.tar.gz" in manifest
    bin_dir = components.ensure_built(("kubernetes", "krew"))
    validator = bin_dir / "validate-krew-manifest"
    # It installs the archive with `kubectl krew install`: kubectl and kubectl-krew on PATH.
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "KREW_ROOT": str(tmp_path / "krew"),
    }
    with contextlib.chdir(tmp_path):
        result = subprocess.run(
            [str(validator), "-manifest", str(built["manifest"])],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
            env=env,
        )
    assert result.returncode == 0, result.stdout + result.stderr
