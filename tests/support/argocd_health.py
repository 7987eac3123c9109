"""Run Lockstep's Argo CD health check (the real Lua file) on an object, as Argo CD does:
the object is the global `obj`, the script's returned table has `status` and `message`.

Argo CD embeds gopher-lua, a Lua 5.1; lupa's Lua 5.1 runtime is the closest match. The
libraries Argo CD does not offer a health script (io, os, require, file loading) are removed, so
a script that leans on them fails here first.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
HEALTH_DIR = (
    REPO / "charts" / "lockstep" / "files" / "argocd" / "lockstep.dev" / "DatabaseMigration"
)
HEALTH_LUA = HEALTH_DIR / "health.lua"
HEALTH_TESTS = HEALTH_DIR / "health_test.yaml"
TESTDATA = HEALTH_DIR / "testdata"
STATUSES = ("Healthy", "Progressing", "Suspended", "Degraded", "Missing", "Unknown")


def evaluate(obj: Mapping[str, Any], script: str | None = None) -> dict[str, str]:
    from lupa.lua51 import LuaRuntime

    lua = LuaRuntime(register_eval=False, register_builtins=False)
    lua.execute("io, os, require, dofile, loadfile, load, loadstring, module = nil")
    lua.globals().obj = lua.table_from(_plain(obj), recursive=True)
    result = lua.execute(script if script is not None else HEALTH_LUA.read_text())
    if result is None:
        raise AssertionError("the health script returned nothing")
    return {key: str(result[key]) for key in ("status", "message") if result[key] is not None}


def _plain(value: Any) -> Any:
    """YAML/JSON data with None left out, as a decoded Kubernetes object would have it."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def load_tests() -> list[dict[str, Any]]:
    tests: list[dict[str, Any]] = yaml.safe_load(HEALTH_TESTS.read_text())["tests"]
    return tests
