"""What existing tables look like, as the classifier's :class:`~lockstep.classify.plan.Schema`.

The classifier judges a type change by the column's old type: ``varchar(20)`` to
``varchar(50)`` needs no rewrite, ``varchar(20)`` to ``varchar(10)`` rewrites and can fail.
A plan that did not declare the column itself leaves the old type unknown; the plan Job
then reads it from the database's catalogs (:mod:`lockstep.pod.live_schema`: one query on
``information_schema``).  This module turns DDL text into the same shape, for callers
that hold the schema as SQL (a schema dump, a test's setup script).  Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping

from lockstep.classify import mysql, postgres
from lockstep.classify.findings import Dialect
from lockstep.classify.plan import Column, PlanState, Schema


def from_sql(sql: str, dialect: Dialect) -> Schema:
    """The columns the ``CREATE TABLE`` / ``ALTER TABLE`` statements in ``sql`` declare."""
    state = PlanState()
    reader = postgres.read_script(sql, state) if dialect == "postgresql" else None
    if reader is None:
        reader = mysql.read_script(sql, state, dialect)
    for _ in reader:
        pass
    columns: dict[str, Mapping[str, Column]] = dict(state.columns)
    return columns
