"""Build the kubectl plugin on its own: a small wheel, a single-file executable and a krew manifest.

`pip install lockstep-operator` brings the plugin with the operator's dependencies (Kopf,
SQLAlchemy, Alembic, drivers, parsers). A person who only runs `kubectl lockstep status` needs
none of them, so this builds the plugin alone:

    python tools/build_plugin.py [--out dist/plugin] [--release-url URL]

* ``kubectl_lockstep-<version>-py3-none-any.whl``: the plugin and the Lockstep modules it reads
  (``lockstep.{constants,conditions,status,timestamps,kube_wire}``), depending on ``kubernetes``
  and ``PyYAML`` only; ``pip install`` it to get ``kubectl-lockstep`` on PATH.
* ``kubectl-lockstep``: the same as one executable zip application (``python3`` >= 3.11 runs it),
  its dependencies inside, in ``kubectl-lockstep.tar.gz`` with the licence, for krew.
* ``krew/lockstep.yaml``: the krew manifest for that archive (URI under ``--release-url``,
  sha256 of this build), from ``packaging/krew/lockstep.yaml``.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tarfile
import zipapp
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "operator" / "lockstep"
# What the plugin imports from Lockstep (a unit test checks this against its real imports).
PLUGIN_MODULES = (
    "__init__.py",
    "constants.py",
    "conditions.py",
    "kube_wire.py",
    "status.py",
    "timestamps.py",
)
PLUGIN_PACKAGE = "plugin"
DEPENDENCIES = ("kubernetes>=29", "PyYAML>=6")
# A zip application cannot load compiled extensions: the Kubernetes client from 36 on needs
# pydantic and aiohttp, which have them, so the executable carries the newest pure-Python one.
ZIPAPP_PINS = ("kubernetes>=29,<36",)
KREW_TEMPLATE = REPO / "packaging" / "krew" / "lockstep.yaml"
DEFAULT_RELEASE_URL = "https://github.com/lockstep-dev/lockstep/releases/download/v{version}"
PYPROJECT = """\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "kubectl-lockstep"
version = "{version}"
description = "kubectl lockstep: status, approval, retry, rollback of Lockstep DatabaseMigrations"
requires-python = ">=3.11"
license = "Apache-2.0"
dependencies = [{dependencies}]

[project.scripts]
kubectl-lockstep = "lockstep.plugin:run"

[tool.setuptools.packages.find]
where = ["src"]
"""


def version() -> str:
    namespace: dict[str, str] = {}
    exec((PACKAGE / "__init__.py").read_text(), namespace)  # noqa: S102 - our own file
    return namespace["__version__"]


def stage_sources(stage: Path) -> Path:
    """The plugin's sources alone, as a project setuptools can build."""
    source = stage / "src" / "lockstep"
    source.mkdir(parents=True)
    for name in PLUGIN_MODULES:
        shutil.copyfile(PACKAGE / name, source / name)
    shutil.copytree(
        PACKAGE / PLUGIN_PACKAGE,
        source / PLUGIN_PACKAGE,
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    (source / "py.typed").write_text("")
    dependencies = ", ".join(f'"{d}"' for d in DEPENDENCIES)
    (stage / "pyproject.toml").write_text(
        PYPROJECT.format(version=version(), dependencies=dependencies)
    )
    return stage


def pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "-q", *args], check=True)


def build(out: Path, release_url: str) -> dict[str, Path]:
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    stage = stage_sources(out / "stage")
    pip("wheel", "--no-deps", "--wheel-dir", str(out), str(stage))
    (wheel,) = out.glob("kubectl_lockstep-*.whl")

    # The zip application: the wheel and its dependencies, pure Python only (a zip cannot load
    # compiled extensions; PyYAML then uses its pure-Python loader).
    app = out / "app"
    pip("install", "--target", str(app), "--no-compile", str(wheel), *ZIPAPP_PINS)
    for compiled in [*app.rglob("*.so"), *app.rglob("*.pyd")]:
        compiled.unlink()
    # requests' charset detector ships compiled by default; its pure-Python wheel instead.
    pure = out / "pure"
    pip(
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--platform",
        "any",
        "--implementation",
        "py",
        "--python-version",
        "3.11",
        "-d",
        str(pure),
        "charset-normalizer",
    )
    pip(
        "install",
        "--target",
        str(app),
        "--no-compile",
        "--no-deps",
        "--upgrade",
        *map(str, pure.glob("*.whl")),
    )
    shutil.rmtree(pure)
    for tests in app.glob("*/tests"):
        shutil.rmtree(tests)
    executable = out / "kubectl-lockstep"
    zipapp.create_archive(
        app,
        executable,
        interpreter="/usr/bin/env python3",
        main="lockstep.plugin:run",
        compressed=True,
    )
    shutil.rmtree(app)

    archive = out / "kubectl-lockstep.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(executable, arcname="kubectl-lockstep")
        tar.add(REPO / "LICENSE", arcname="LICENSE")
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    manifest = out / "krew" / "lockstep.yaml"
    manifest.parent.mkdir()
    url = release_url.format(version=version()).rstrip("/") + "/kubectl-lockstep.tar.gz"
    manifest.write_text(
        KREW_TEMPLATE.read_text()
        .replace("{{version}}", f"v{version()}")
        .replace("{{uri}}", url)
        .replace("{{sha256}}", digest)
    )
    shutil.rmtree(stage)
    return {"wheel": wheel, "executable": executable, "archive": archive, "manifest": manifest}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "dist" / "plugin")
    parser.add_argument(
        "--release-url",
        default=DEFAULT_RELEASE_URL,
        help="where the archive is published ({version} is filled in)",
    )
    args = parser.parse_args()
    for kind, path in build(args.out, args.release_url).items():
        print(f"{kind}: {path} ({path.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
