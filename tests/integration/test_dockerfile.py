"""The Dockerfile, checked without a Docker engine: its rules, and its install steps run for real.

The final stage installs only the wheel built in the first stage; the same steps run here in a
throwaway venv, and the entry points the image relies on must work.
"""

from __future__ import annotations

import re
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = (REPO / "Dockerfile").read_text()

pytestmark = pytest.mark.integration


def instructions() -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    lines = [line.strip() for line in joined.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]


def stages() -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for instruction in instructions():
        if instruction[0] == "FROM":
            found.append([])
        found[-1].append(instruction)
    return found


def test_multi_stage_with_a_slim_pinned_base() -> None:
    bases = [args for stage in stages() for op, args in stage if op == "FROM"]
    assert len(bases) == 2
    for base in bases:
        image = base.split()[0]
        assert ":" in image and not image.endswith(":latest"), image  # hadolint DL3006/DL3007
        assert "slim" in image


def test_final_stage_runs_as_a_numeric_non_root_user_with_lockstep_as_entrypoint() -> None:
    final = stages()[-1]
    users = [args for op, args in final if op == "USER"]
    assert users and re.fullmatch(r"[1-9]\d*:[1-9]\d*", users[-1])  # numeric: runAsNonRoot works
    assert ("ENTRYPOINT", '["lockstep"]') in final
    assert ("CMD", '["operator"]') in final


def test_final_stage_installs_the_wheel_only_and_no_build_tools() -> None:
    final = " ".join(args for op, args in stages()[-1] if op == "RUN")
    assert "--no-index" in final and "--find-links=/wheels" in final
    assert "--no-cache-dir" in final  # hadolint DL3042
    for tool in ("gcc", "build-essential", "apt-get", "git"):
        assert tool not in final
    assert not any(op == "COPY" and "operator" in args for op, args in stages()[-1])


def test_the_install_steps_work_and_the_entry_points_run(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(wheels), str(REPO)],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheels.glob("lockstep_operator-*.whl")
    target = tmp_path / "venv"
    venv.create(target, with_pip=True, system_site_packages=False)
    python = target / "bin" / "python"
    # The dependencies come from the index here (the image builds them as wheels first).
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-cache-dir", str(wheel)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    version = subprocess.run(
        [str(target / "bin" / "lockstep"), "--version"], capture_output=True, text=True, check=True
    )
    assert version.stdout.strip() == "lockstep 0.1.0"
    for command in (
        ["operator", "--help"],
        ["run", "--help"],
        ["lock", "--help"],
        ["wait", "--help"],
    ):
        subprocess.run(
            [str(target / "bin" / "lockstep"), *command], check=True, capture_output=True
        )
    plugin = subprocess.run(
        [str(target / "bin" / "kubectl-lockstep"), "--help"], capture_output=True, text=True
    )
    assert plugin.returncode == 0 and "lockstep" in plugin.stdout
    # The installed package is the wheel, not this checkout.
    location = subprocess.run(
        [str(python), "-c", "import lockstep; print(lockstep.__file__)"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    ).stdout
    assert str(target) in location
