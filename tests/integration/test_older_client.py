"""The operator's and the plugin's requests on Kubernetes client 35, the newest without pydantic.

The plugin's standalone executable carries client 35 (a zip application cannot load pydantic's
compiled core: tools/build_plugin.py), and `pyproject.toml` lets the operator run on any client
from 29 on. Client 35's request path under the generated classes differs from 37's (no
`param_serialize`), so `lockstep.kube_wire` uses only what both have; this runs the same probe
as tests/unit/test_raw_requests.py on client 35, installed from PyPI once into a cache outside
the repository (about 2 MB; the registry must be reachable, as for the plugin's build).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import raw_wire

pytestmark = pytest.mark.integration

OLDER = ("kubernetes==35.0.0", "six==1.17.0")  # what client 35 imports beyond the venv's


def older_client() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    target = cache / "lockstep" / "kubernetes-client-35"
    if not (target / "kubernetes" / "__init__.py").exists():
        pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps"]
        subprocess.run(
            [*pip, "--target", str(target), *OLDER],
            check=True,
            timeout=600,
        )
    return target


def test_the_wire_is_the_same_on_client_35() -> None:
    report = raw_wire.run_probe(str(older_client()))
    assert report["client"].startswith("35.")
    raw_wire.check_wire(report)
