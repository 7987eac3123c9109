"""Tool adapters: lookup and the commands a migration Job runs (pure parts)."""

from __future__ import annotations

import pytest

from lockstep import errors, tools
from lockstep.tools import base

BUILTIN = ["sql", "alembic"]


def test_known_tools() -> None:
    assert set(BUILTIN) <= set(tools.tool_names())


def test_unknown_tool_lists_the_known_ones() -> None:
    with pytest.raises(errors.UnknownTool) as caught:
        tools.get_adapter("liquibase")
    assert "unknown migration tool 'liquibase'" in str(caught.value)
    assert "alembic, " in str(caught.value)
    assert caught.value.reason == "UnknownTool"


def test_alembic_from_an_image_runs_the_images_alembic() -> None:
    adapter = tools.get_adapter("alembic")
    assert adapter.upgrade_command("head") == ["alembic", "upgrade", "head"]
    assert adapter.downgrade_command("0001") == ["alembic", "downgrade", "0001"]
    assert adapter.downgrade_command("0") == ["alembic", "downgrade", "base"]


@pytest.mark.parametrize("tool", ["sql"])
def test_builtin_upgrade_command(tool: str) -> None:
    adapter = tools.get_adapter(tool)
    assert adapter.name == tool
    assert adapter.builtin
    assert adapter.upgrade_command("head") == [
        "lockstep",
        "run",
        "--tool",
        tool,
        "--source",
        "/migrations",
        "--target",
        "head",
    ]


@pytest.mark.parametrize("tool", ["sql"])
def test_builtin_downgrade_command_allows_downgrade(tool: str) -> None:
    command = tools.get_adapter(tool).downgrade_command("2")
    assert command[-3:] == ["--target", "2", "--allow-downgrade"]
    assert command[:4] == ["lockstep", "run", "--tool", tool]


@pytest.mark.parametrize(
    ("tool", "table"), [("sql", "lockstep_schema_history"), ("alembic", "alembic_version")]
)
def test_version_tables(tool: str, table: str) -> None:
    assert tools.get_adapter(tool).version_table == table


def test_an_adapter_must_implement_the_whole_interface() -> None:
    class HalfDone(base.ToolAdapter):
        name = "half"
        version_table = "half_version"

        def upgrade_command(self, target: str) -> list[str]:
            return ["half", "up", target]

    with pytest.raises(TypeError):
        HalfDone()  # type: ignore[abstract]


def test_downgrade_unsupported_is_a_reasoned_error() -> None:
    error = errors.DowngradeUnsupported("prisma cannot go down: write a new migration instead")
    assert error.reason == "DowngradeUnsupported"
