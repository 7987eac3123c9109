"""Migration tool adapters, one module per tool; :func:`get_adapter` picks one by name.

The adapters' modules load when an adapter is first asked for: a run of the built-in runner
imports :mod:`lockstep.tools.base` or :mod:`lockstep.tools.sql` alone, not every tool's module
(issue 21).
"""

from __future__ import annotations

import functools

from lockstep import errors
from lockstep.tools.base import ToolAdapter

__all__ = ["ToolAdapter", "get_adapter", "tool_names"]


@functools.cache
def _adapters() -> dict[str, ToolAdapter]:
    from lockstep.tools import alembic, django, flyway, knex, prisma, sequelize, sql

    return {
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
    return sorted(_adapters())


def get_adapter(tool_name: str) -> ToolAdapter:
    """The adapter for ``spec.tool``; :class:`lockstep.errors.UnknownTool` names the known tools."""
    try:
        return _adapters()[tool_name]
    except KeyError:
        raise errors.UnknownTool(
            f"unknown migration tool {tool_name!r}; Lockstep supports: {', '.join(tool_names())}"
        ) from None
