"""What the classifier has learnt from the plan's earlier statements.

Statements are read in plan order.  A table created earlier in the plan holds no data
yet, so changes to it cannot lose data, fail on existing rows or block the running
application: such *new* tables, and the bookkeeping tables the caller asks to ignore,
are exempt from findings.  The state also remembers the column types the plan has
declared, so that a later type change can be told to be narrowing.

Table names are compared by their last, unqualified part, case-insensitively: the
plan rarely spells a table's schema the same way twice, and two tables of the same name
in different schemas within one plan are rare enough to accept the ambiguity.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from lockstep.classify.coltypes import ColumnType
from lockstep.classify.findings import Severity

UNPARSED_KIND: Final = "UNPARSED"  # the summary kind of a statement the parser cannot read


@dataclass(frozen=True)
class Issue:
    """A finding before it knows its file and line.

    ``table`` names the existing table the finding is about, so the live schema's facts about
    it (size, duplicates) can refine the verdict; ``lock_only`` marks a finding whose only risk
    is the time the table stays locked (a rewrite, copy or scan that cannot fail or lose data);
    ``unique_columns`` are the columns of a unique key the statement adds, when plain columns.
    """

    rule: str
    severity: Severity
    message: str
    table: str = ""
    lock_only: bool = False
    unique_columns: tuple[str, ...] = ()


@dataclass(frozen=True)
class Classified:
    """One statement of a script: its kind, where it is, and its issues.

    ``start`` is the offset of the statement's first token (comments before it are
    skipped) and ``end`` the offset just past its last character, both in characters.
    """

    kind: str
    start: int
    end: int
    issues: tuple[Issue, ...] = ()


@dataclass(frozen=True)
class Column:
    """What the plan declared about a column: its type and whether it allows NULL."""

    type: ColumnType
    nullable: bool = True
    auto_increment: bool = False


Schema = Mapping[str, Mapping[str, Column]]  # table -> column -> what is known about it


def table_key(name: str) -> str:
    """The comparable form of a table name: unqualified and lower case."""
    return name.rsplit(".", 1)[-1].strip('"`[]').lower()


@dataclass
class PlanState:
    """Tables created so far in the plan, their known columns, and ignored tables."""

    ignored: frozenset[str] = frozenset()
    new_tables: set[str] = field(default_factory=set)
    columns: dict[str, dict[str, Column]] = field(default_factory=dict)
    new_objects: set[str] = field(default_factory=set)
    not_valid_in_file: set[str] = field(default_factory=set)
    not_null_checks: dict[str, tuple[str, str]] = field(default_factory=dict)
    not_null_proven: set[tuple[str, str]] = field(default_factory=set)
    checks: Mapping[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)
    asked: set[str] = field(default_factory=set)  # tables whose CHECKs a quiet verdict used

    @classmethod
    def ignoring(
        cls,
        tables: Iterable[str],
        schema: Schema | None = None,
        *,
        not_null_proven: Iterable[tuple[str, str]] = (),
        checks: Mapping[tuple[str, str], tuple[str, ...]] | None = None,
    ) -> PlanState:
        """A state for a plan; ``schema`` holds the columns existing tables have already.

        ``not_null_proven``: (table, column) pairs the database already holds a validated
        ``CHECK (column IS NOT NULL)`` for; ``checks``: the validated CHECK constraints on
        each (table, column), which a type change re-checks.
        """
        known = {table_key(table): dict(columns) for table, columns in (schema or {}).items()}
        return cls(
            ignored=frozenset(table_key(table) for table in tables),
            columns=known,
            not_null_proven={(table_key(t), c.lower()) for t, c in not_null_proven},
            checks={(table_key(t), c.lower()): names for (t, c), names in (checks or {}).items()},
        )

    def checks_on(self, table: str, column: str) -> tuple[str, ...]:
        """The validated CHECK constraints the database holds on ``table.column`` (and the
        table is one to ask the database about, even when the verdict stays quiet)."""
        if not self.exempt(table):
            self.asked.add(table_key(table))
        return self.checks.get((table_key(table), column.lower()), ())

    def begin_file(self) -> None:
        """A new file runs in a new transaction: locks taken by the last one are gone."""
        self.not_valid_in_file.clear()

    def create_object(self, name: str) -> None:
        """Remember a view, sequence, function, type or index created by the plan."""
        self.new_objects.add(table_key(name))

    def is_new_object(self, name: str) -> bool:
        key = table_key(name)
        return key in self.new_objects or key in self.new_tables

    def exempt(self, table: str) -> bool:
        """True for a table created earlier in the plan or ignored by the caller."""
        key = table_key(table)
        return key in self.new_tables or key in self.ignored

    def existing(self, tables: Iterable[str]) -> list[str]:
        """The tables that may hold data and are not ignored, in the order given."""
        return [table for table in tables if not self.exempt(table)]

    def column(self, table: str, name: str) -> Column | None:
        return self.columns.get(table_key(table), {}).get(name.lower())

    def create_table(
        self, table: str, columns: dict[str, Column], *, if_not_exists: bool = False
    ) -> None:
        """Remember a created table: new, unless created IF NOT EXISTS.

        ``CREATE TABLE IF NOT EXISTS`` may find the table already there, with data, so the
        table does not become new; its columns are remembered unless the plan already
        knows the table (then the statement does nothing).
        """
        key = table_key(table)
        if if_not_exists and (key in self.columns or key in self.new_tables):
            return
        if not if_not_exists:
            self.new_tables.add(key)
        self.columns[key] = {name.lower(): column for name, column in columns.items()}

    def drop_table(self, table: str) -> None:
        key = table_key(table)
        self.new_tables.discard(key)
        self.columns.pop(key, None)

    def rename_table(self, old: str, new: str) -> None:
        old_key, new_key = table_key(old), table_key(new)
        if old_key in self.new_tables:
            self.new_tables.discard(old_key)
            self.new_tables.add(new_key)
        self.columns[new_key] = self.columns.pop(old_key, {})

    def set_column(self, table: str, name: str, column: Column) -> None:
        self.columns.setdefault(table_key(table), {})[name.lower()] = column

    def drop_column(self, table: str, name: str) -> None:
        self.columns.get(table_key(table), {}).pop(name.lower(), None)

    def rename_column(self, table: str, old: str, new: str) -> None:
        known = self.columns.get(table_key(table), {})
        if old.lower() in known:
            known[new.lower()] = known.pop(old.lower())
