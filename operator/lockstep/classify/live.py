"""What the live database says about the tables a plan touches, and how it refines findings.

A static linter must assume every table is large and every unique key may meet duplicates.
The plan Job is connected to the database, so it can ask (:mod:`lockstep.pod.live_schema`,
bounded queries on the touched tables only) and the classifier can say more:

* a finding whose only risk is lock time (a rewrite, a table copy, an index built under a
  write lock, a type widening's re-check) on a table below :class:`Thresholds` becomes
  ``info``: the lock lasts milliseconds.  Findings that lose data or can fail on existing
  rows keep their severity whatever the size;
* a unique key the plan adds is checked for duplicates on tables below the same bound:
  "will fail: duplicates exist", "no duplicates now" or "not checked" (too large to check);
* every refined finding states the size it relied on, so a person can see why.

The plan's hash covers its SQL only: an approval names the SQL, not the sizes, so a table
growing past the threshold changes the classification (and may ask for approval where
none was needed) but never invalidates an approval already given.  Pure: no I/O.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from lockstep.classify.findings import Questions, UniqueKey
from lockstep.classify.plan import Issue, Schema, table_key

DEFAULT_MAX_ROWS: Final = 10_000
DEFAULT_MAX_BYTES: Final = 10 * 1024 * 1024


@dataclass(frozen=True)
class Thresholds:
    """Below both bounds a table is small: its rewrite or scan holds a lock only briefly,
    and checking it for duplicates is cheap."""

    rows: int = DEFAULT_MAX_ROWS
    bytes: int = DEFAULT_MAX_BYTES


@dataclass(frozen=True)
class TableSize:
    """Rows (exact when counted, else the catalog's estimate) and bytes with indexes."""

    rows: int
    bytes: int

    def small(self, limits: Thresholds) -> bool:
        return 0 <= self.rows < limits.rows and 0 <= self.bytes < limits.bytes

    def describe(self) -> str:
        rows = f"~{self.rows:,} rows" if self.rows >= 0 else "rows not yet counted"
        return f"{rows}, {_bytes(self.bytes)}"


@dataclass(frozen=True)
class LiveFacts:
    """Answers to :class:`Questions`, plus the CHECK constraints of the touched tables.

    ``duplicates[key]`` is True when duplicates exist, False when a check found none; a key
    missing from it was not checked (table too large, a column the plan adds, a failure).
    """

    sizes: Mapping[str, TableSize] = field(default_factory=dict)
    duplicates: Mapping[UniqueKey, bool] = field(default_factory=dict)
    not_null_checks: frozenset[tuple[str, str]] = frozenset()
    checks: Mapping[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)
    thresholds: Thresholds = Thresholds()

    def size(self, table: str) -> TableSize | None:
        return self.sizes.get(table_key(table))


LiveSchema = tuple[Schema, LiveFacts | None]  # the columns, and the facts when asked


def unique_key(table: str, columns: Iterable[str]) -> UniqueKey:
    return table_key(table), tuple(column.lower() for column in columns)


def questions(issues: Iterable[Issue], asked: Iterable[str] = ()) -> Questions:
    """The tables and unique keys the live schema could say something about; ``asked``:
    tables whose CHECK constraints a statement consulted."""
    tables: set[str] = set(asked)
    keys: set[UniqueKey] = set()
    for issue in issues:
        if issue.table:
            tables.add(table_key(issue.table))
            if issue.unique_columns:
                keys.add(unique_key(issue.table, issue.unique_columns))
    return Questions(frozenset(tables), frozenset(keys))


def refine(issue: Issue, facts: LiveFacts | None) -> Issue:
    """``issue`` as the live facts about its table leave it (unchanged without facts)."""
    if facts is None or not issue.table:
        return issue
    size = facts.size(issue.table)
    if issue.unique_columns:
        return _unique(issue, facts, size)
    if not issue.lock_only or size is None:
        return issue
    if size.small(facts.thresholds):
        note = (
            f"{issue.table} (measured: {size.describe()}) is below the small-table threshold "
            f"({_limits(facts.thresholds)}), so the lock is brief; no approval needed for it."
        )
        return dataclasses.replace(issue, severity="info", message=f"{issue.message} {note}")
    note = f"{issue.table} holds {size.describe()} (at or above {_limits(facts.thresholds)})."
    return dataclasses.replace(issue, message=f"{issue.message} {note}")


def _unique(issue: Issue, facts: LiveFacts, size: TableSize | None) -> Issue:
    key = unique_key(issue.table, issue.unique_columns)
    columns = ", ".join(issue.unique_columns)
    found = facts.duplicates.get(key)
    measured = f" ({size.describe()})" if size is not None else ""
    if found:
        return dataclasses.replace(
            issue,
            severity="breaking",
            message=f"Will fail: duplicates exist in {issue.table} ({columns}){measured}. "
            f"{issue.message}",
        )
    if found is False:
        note = f"No duplicates in {issue.table} ({columns}) when planned{measured}."
    elif size is not None and not size.small(facts.thresholds):
        note = f"Duplicates not checked: {issue.table}{measured} is above the size bound."
    else:
        note = f"Duplicates not checked in {issue.table} ({columns})."
    return dataclasses.replace(issue, message=f"{issue.message} {note}")


def _limits(limits: Thresholds) -> str:
    return f"{limits.rows:,} rows and {_bytes(limits.bytes)}"


def _bytes(count: int) -> str:
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("kB", 1 << 10)):
        if count >= scale:
            return (
                f"{count / scale:.0f} {unit}"
                if count >= 10 * scale
                else f"{count / scale:.1f} {unit}"
            )
    return f"{count} B"
