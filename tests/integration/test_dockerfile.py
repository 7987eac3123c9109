"""The Dockerfile's rules, read from the file (the image itself is built and run by
tests/image, `make image-smoke`).
"""

from __future__ import annotations

import re
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
        if found:  # the ARGs before the first FROM belong to no stage
            found[-1].append(instruction)
    return found


def base_image_default() -> str:
    (default,) = re.findall(r"^ARG BASE_IMAGE=(\S+)$", DOCKERFILE, re.MULTILINE)
    return default


def test_the_published_base_is_a_slim_python_pinned_by_tag_and_digest() -> None:
    default = base_image_default()
    name, _, digest = default.partition("@")
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest), default
    tag = name.rsplit(":", 1)[1]
    # A precise version on a named Debian release: hadolint DL3006/DL3007, and the same
    # bookworm the local debootstrap base (scripts/build-image.sh) is made from.
    assert re.fullmatch(r"3\.11\.\d+-slim-bookworm", tag), tag
    assert "bookworm" in (REPO / "scripts" / "build-image.sh").read_text()


def test_every_stage_starts_from_the_base_argument_or_an_earlier_stage() -> None:
    named: list[str] = []
    for stage in stages():
        base = stage[0][1].split()
        assert base[0] == "${BASE_IMAGE}" or base[0] in named, base
        if len(base) == 3 and base[1].upper() == "AS":
            named.append(base[2])
    assert len(stages()) >= 2


def test_final_stage_runs_as_a_numeric_non_root_user_with_lockstep_as_entrypoint() -> None:
    final = stages()[-1]
    users = [args for op, args in final if op == "USER"]
    assert users and re.fullmatch(r"[1-9]\d*:[1-9]\d*", users[-1])  # numeric: runAsNonRoot works
    assert ("ENTRYPOINT", '["lockstep"]') in final
    assert ("CMD", '["operator"]') in final


def test_final_stage_copies_the_venv_and_lockstep_only_and_no_build_tools() -> None:
    final = stages()[-1]
    copies = [args for op, args in final if op == "COPY"]
    assert copies == ["--from=venv /opt/lockstep /opt/lockstep", "--from=build /lockstep-files/ /"]
    runs = " ".join(args for op, args in final if op == "RUN")
    for tool in ("pip", "gcc", "build-essential", "apt-get", "git"):
        assert tool not in runs
    env = " ".join(args for op, args in final if op == "ENV")
    # Nothing written at run time outside /tmp: no bytecode, HOME on the pods' /tmp emptyDir.
    assert "PYTHONDONTWRITEBYTECODE=1" in env and "HOME=/tmp" in env
