"""The Helm chart under test: the helm binary, rendering, and the previous chart version.

`helm()` is the real Helm (v3, built from Go modules by tools/k8s/build.sh and cached outside the
repository, like the control plane). `render()` runs `helm template` and returns the manifests
as dicts. `previous_chart()` is the chart as first committed (what an upgrade starts from).
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from alerting import go_binary

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "lockstep"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))

Manifest = dict[str, Any]


@functools.cache
def helm() -> Path:
    return go_binary("helm")


class HelmError(AssertionError):
    """helm exited non-zero; the message carries its stderr."""


def run_helm(*args: str, kubeconfig: Path | None = None, timeout: float = 300) -> str:
    env = {**os.environ, "HELM_CACHE_HOME": str(_helm_home() / "cache")}
    env["HELM_CONFIG_HOME"] = str(_helm_home() / "config")
    env["HELM_DATA_HOME"] = str(_helm_home() / "data")
    if kubeconfig is not None:
        env["KUBECONFIG"] = str(kubeconfig)
    result = subprocess.run(
        [str(helm()), *args], capture_output=True, text=True, env=env, timeout=timeout, check=False
    )
    if result.returncode != 0:
        raise HelmError(f"helm {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result.stdout


@functools.cache
def _helm_home() -> Path:
    """Helm's own config/cache/data in a private directory: never the user's repositories."""
    home = Path(tempfile.mkdtemp(prefix="lockstep-helm-"))
    atexit.register(shutil.rmtree, home, ignore_errors=True)
    return home


def values_args(files: Iterable[Path] = (), values: Mapping[str, Any] | None = None) -> list[str]:
    args: list[str] = []
    for path in files:
        args += ["--values", str(path)]
    for key, value in (values or {}).items():
        args += ["--set-json", f"{key}={json.dumps(value)}"]
    return args


def render_text(
    files: Iterable[Path] = (),
    values: Mapping[str, Any] | None = None,
    release: str = "lockstep",
    namespace: str = "lockstep-system",
    chart: Path = CHART,
    extra: Sequence[str] = (),
) -> str:
    return run_helm(
        "template",
        release,
        str(chart),
        "--namespace",
        namespace,
        *values_args(files, values),
        *extra,
    )


def render(
    files: Iterable[Path] = (),
    values: Mapping[str, Any] | None = None,
    release: str = "lockstep",
    namespace: str = "lockstep-system",
    chart: Path = CHART,
) -> list[Manifest]:
    """`helm template` as a list of manifests (empty documents dropped)."""
    text = render_text(files, values, release, namespace, chart)
    return [doc for doc in yaml.safe_load_all(text) if doc]


def by_kind(manifests: Iterable[Manifest], kind: str) -> list[Manifest]:
    return [m for m in manifests if m.get("kind") == kind]


def one(manifests: Iterable[Manifest], kind: str, name: str | None = None) -> Manifest:
    found = [m for m in by_kind(manifests, kind) if name is None or m["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def first_chart_commit() -> str | None:
    """The first commit that has the chart, or None (not committed yet, or no git history)."""
    git = shutil.which("git")
    if git is None:
        return None
    result = subprocess.run(
        [git, "log", "--diff-filter=A", "--format=%H", "--", "charts/lockstep/Chart.yaml"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    commits = result.stdout.split() if result.returncode == 0 else []
    return commits[-1] if commits else None


def previous_chart(directory: Path) -> tuple[Path, str]:
    """The chart as first committed, extracted into `directory`; the working tree's if none.

    Returns the chart directory and where it came from (a commit, or "working tree").
    """
    commit = first_chart_commit()
    if commit is None:
        target = directory / "lockstep"
        shutil.copytree(CHART, target)
        return target, "working tree (the chart has no commit yet)"
    archive = directory / "previous.tar"
    subprocess.run(
        ["git", "archive", "--format=tar", "-o", str(archive), commit, "charts/lockstep"],
        cwd=REPO,
        check=True,
    )
    with tarfile.open(archive) as tar:
        tar.extractall(directory, filter="data")
    return directory / "charts" / "lockstep", f"commit {commit[:12]}"
