"""Migration tool adapters, one module per tool; :func:`get_adapter` picks one by name."""

from __future__ import annotations

from lockstep import errors
from lockstep.tools import alembic, django, flyway, knex, prisma, sequelize, sql
from lockstep.tools.base import ToolAdapter

__all__ = ["ToolAdapter", "get_adapter", "tool_names"]

_ADAPTERS: dict[str, ToolAdapter] = {
    adapter.name: adapter
    for adapter in (
        sql.SqlAdapter(),
        alembic.AlembicAdapter(),
        flyway.FlywayAdapter(),
        prisma.PrismaAdapter(),
        knex.KnexAdapter(),
        django.DjangoAdapter(),
        sequelize.SequelizeAdapter(),
    )
}


def tool_names() -> list[str]:
    return sorted(_ADAPTERS)


def get_adapter(tool_name: str) -> ToolAdapter:
    """The adapter for ``spec.tool``; :class:`lockstep.errors.UnknownTool` names the known tools."""
    try:
        return _ADAPTERS[tool_name]
    except KeyError:
        raise errors.UnknownTool(
            f"unknown migration tool {tool_name!r}; Lockstep supports: {', '.join(tool_names())}"
        ) from None
