"""The statement splitter as it was before issue 21 made it fast: the reference it must equal.

A copy of ``lockstep/sql_splitter.py`` at commit b4e3286 (a lexer that stepped through a script
token by token, with Python loops inside quotes and comments: 0.45 s per MB). The differential
test (tests/unit/test_sql_splitter_differential.py) feeds both the same generated and fuzzed
scripts and requires the same statements and lines. Do not "fix" this copy: it is the old
behaviour, quirks included.
"""

from __future__ import annotations

import bisect
import functools
import re
import sqlite3
from dataclasses import dataclass, field
from typing import Final, Literal

Dialect = Literal["postgresql", "mysql", "sqlite", "generic"]

_DELIMITER_COMMAND = re.compile(r"[ \t]*DELIMITER[ \t]+(\S+)[ \t]*(?:\r?\n|$)", re.I)


@dataclass(frozen=True)
class Statement:
    """One SQL statement and the 1-based line of the file where it starts."""

    text: str
    line: int

    def shortened(self, limit: int = 120) -> str:
        """One line, at most ``limit`` characters: for messages and logs."""
        flat = " ".join(self.text.split())
        return flat if len(flat) <= limit else flat[: limit - 3] + "..."


@dataclass
class _Splitter:
    """A small lexer: finds statement ends outside quotes, comments and dollar quotes."""

    sql: str
    dialect: Dialect
    delimiter: str = ";"
    pieces: list[tuple[int, int]] = field(default_factory=list)  # (start, end) offsets
    start: int | None = None  # first significant character of the current statement

    def run(self) -> list[tuple[int, int]]:
        i = 0
        while i < len(self.sql):
            i = self.step(i)
        if self.start is not None:
            self.pieces.append((self.start, len(self.sql)))
        return self.pieces

    def step(self, i: int) -> int:
        sql = self.sql
        if self.start is None and self.dialect == "mysql":
            moved = self.delimiter_command(i)
            if moved is not None:
                return moved
        if sql.startswith(self.delimiter, i):
            if self.start is not None:
                self.pieces.append((self.start, i))
                self.start = None
            return i + len(self.delimiter)
        char = sql[i]
        if char.isspace():
            match = _NON_SPACE.search(sql, i + 1)
            return match.start() if match else len(sql)
        comment_end = self.comment_end(i)
        if comment_end is not None:
            return comment_end
        if self.start is None:
            self.start = i
        return self.token_end(i)

    def delimiter_command(self, i: int) -> int | None:
        """MySQL client's ``DELIMITER //``: valid at the start of a line, between statements."""
        if i and self.sql[i - 1] not in "\n":
            return None
        match = _DELIMITER_COMMAND.match(self.sql, i)
        if match is None:
            return None
        self.delimiter = match[1]
        return match.end()

    def comment_end(self, i: int) -> int | None:
        sql = self.sql
        if sql.startswith("--", i) and (
            self.dialect != "mysql" or i + 2 >= len(sql) or sql[i + 2].isspace()
        ):
            return _line_end(sql, i)
        if sql[i] == "#" and self.dialect == "mysql":
            return _line_end(sql, i)
        if sql.startswith("/*", i) and not sql.startswith("/*!", i):
            return _block_comment_end(sql, i, nested=self.dialect in ("postgresql", "generic"))
        return None

    def token_end(self, i: int) -> int:
        sql, char = self.sql, self.sql[i]
        if char == "'":
            backslash = self.dialect == "mysql" or _is_escape_string(sql, i)
            return _quoted_end(sql, i, "'", backslash)
        if char == '"':
            return _quoted_end(sql, i, '"', backslash=self.dialect == "mysql")
        if char == "`" and self.dialect in ("mysql", "sqlite"):
            return _quoted_end(sql, i, "`", backslash=False)
        if sql.startswith("/*!", i):  # MySQL executable comment: part of the statement
            return _block_comment_end(sql, i, nested=False)
        if char == "$" and self.dialect in ("postgresql", "generic"):
            return _dollar_quoted_end(sql, i)
        # Skip to the next character that can change anything (a quote, a comment or
        # delimiter start, space): stepping one character at a time made a 5,000-statement
        # file take most of a second in pure Python.
        match = _plain_run(self.delimiter[0]).search(sql, i + 1)
        return match.start() if match else len(sql)


_NON_SPACE: Final = re.compile(r"\S")


@functools.cache
def _plain_run(delimiter_start: str) -> re.Pattern[str]:
    """The characters :meth:`_Splitter.step` and ``token_end`` treat specially."""
    return re.compile("[" + re.escape(delimiter_start) + "'\"`$/#\\-\\s]")


def _line_end(sql: str, i: int) -> int:
    end = sql.find("\n", i)
    return len(sql) if end < 0 else end


def _block_comment_end(sql: str, i: int, *, nested: bool) -> int:
    depth, j = 0, i
    while j < len(sql):
        if sql.startswith("/*", j):
            depth = depth + 1 if nested or depth == 0 else depth
            j += 2
        elif sql.startswith("*/", j):
            depth -= 1
            j += 2
            if depth == 0:
                return j
        else:
            j += 1
    return len(sql)  # unterminated: the server will say so


def _quoted_end(sql: str, i: int, quote: str, backslash: bool) -> int:
    j = i + 1
    while j < len(sql):
        char = sql[j]
        if backslash and char == "\\":
            j += 2
        elif char == quote:
            if sql.startswith(quote, j + 1):  # doubled quote: an escaped quote
                j += 2
            else:
                return j + 1
        else:
            j += 1
    return len(sql)


def _is_escape_string(sql: str, i: int) -> bool:
    """PostgreSQL ``E'...'`` strings treat backslash as an escape."""
    return i > 0 and sql[i - 1] in "eE" and (i < 2 or not _is_word(sql[i - 2]))


def _is_word(char: str) -> bool:
    return char.isalnum() or char in "_$"


_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_\u0080-\uffff][\w\u0080-\uffff]*)?\$")


def _dollar_quoted_end(sql: str, i: int) -> int:
    # $1 is a parameter and a$b an identifier, not the start of a dollar quote.
    if i > 0 and _is_word(sql[i - 1]):
        return i + 1
    match = _DOLLAR_TAG.match(sql, i)
    if match is None:
        return i + 1
    close = sql.find(match[0], match.end())
    return len(sql) if close < 0 else close + len(match[0])


def _complete_for_sqlite(sql: str, pieces: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Re-join pieces split inside ``CREATE TRIGGER ... BEGIN ...; END``.

    SQLite's own ``complete_statement`` knows when a trigger body ends.
    """
    merged: list[tuple[int, int]] = []
    pending: tuple[int, int] | None = None
    for start, end in pieces:
        pending = (pending[0], end) if pending else (start, end)
        if sqlite3.complete_statement(sql[pending[0] : pending[1]] + ";"):
            merged.append(pending)
            pending = None
    if pending:
        merged.append(pending)
    return merged


def split_statements(sql: str, dialect: Dialect = "generic") -> list[Statement]:
    """Split a script into statements, each with the line it starts on.

    Statement ends are ``;`` outside quotes, comments and (PostgreSQL) dollar
    quotes; MySQL scripts may change the delimiter with ``DELIMITER //`` lines;
    SQLite trigger bodies stay whole.  Comments before a statement are dropped,
    and so are empty statements.
    """
    pieces = _Splitter(sql, dialect).run()
    if dialect == "sqlite":
        pieces = _complete_for_sqlite(sql, pieces)
    newlines = [index for index, char in enumerate(sql) if char == "\n"]
    statements = []
    for start, end in pieces:
        text = sql[start:end].strip()
        if text:
            statements.append(Statement(text, bisect.bisect_left(newlines, start) + 1))
    return statements
