"""SQL scripts split into statements, each with the line it starts on (pure).

A small lexer rather than a parser: it finds statement ends outside quotes, comments and
(PostgreSQL) dollar quotes, follows MySQL's ``DELIMITER`` lines and keeps SQLite trigger bodies
whole. lockstep.sqlfiles reads migration files with it.

Speed is the point of its shape (issue 21): a 50,000-statement file must split in a fraction of
what the database needs to run it. Inside a statement one regular expression jumps straight to
the next place where something can happen (the delimiter, a quote, a comment, a dollar sign);
strings, comments and dollar quotes are skipped with ``str.find`` and regular expressions, never
a Python step per character. Between statements (a few characters each) the lexer steps token by
token, because that is where MySQL's ``DELIMITER`` lines are recognised. Its results equal the
earlier token-by-token lexer's on every input, quirks included: tests/support/reference_splitter.py
keeps that lexer, and tests/unit/test_sql_splitter_differential.py compares the two on generated
and fuzzed scripts.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Final, Literal

Dialect = Literal["postgresql", "mysql", "sqlite", "generic"]

_DELIMITER_COMMAND: Final = re.compile(r"[ \t]*DELIMITER[ \t]+(\S+)[ \t]*(?:\r?\n|$)", re.I)
_NON_SPACE: Final = re.compile(r"\S")
_BLOCK_MARKS: Final = re.compile(r"/\*|\*/")
_DOLLAR_TAG: Final = r"\$(?:[A-Za-z_\u0080-\uffff][\w\u0080-\uffff]*)?\$"
_QUOTE_OR_BACKSLASH: Final = {q: re.compile("[" + re.escape(q) + r"\\]") for q in "'\"`"}


@dataclass(frozen=True)
class Statement:
    """One SQL statement and the 1-based line of the file where it starts."""

    text: str
    line: int

    def shortened(self, limit: int = 120) -> str:
        """One line, at most ``limit`` characters: for messages and logs."""
        flat = " ".join(self.text.split())
        return flat if len(flat) <= limit else flat[: limit - 3] + "..."


@functools.cache
def _next_event(dialect: Dialect, delimiter: str) -> re.Pattern[str]:
    """Inside a statement: the next place where the lexer's state can change.

    Alternatives in the order the lexer gives them precedence at one position: the delimiter,
    then comments, then quotes. MySQL's ``--`` starts a comment only before white space.
    """
    events = [f"(?P<delimiter>{re.escape(delimiter)})"]
    events.append(r"(?P<line>--(?=\s|\Z))" if dialect == "mysql" else r"(?P<line>--)")
    if dialect == "mysql":
        events.append(r"(?P<hash>\#)")
    events.append(r"(?P<block>/\*(?!!))")
    events.append(r"(?P<quote>['\"])")
    if dialect in ("mysql", "sqlite"):
        events.append(r"(?P<backtick>`)")
    events.append(r"(?P<executable>/\*!)")
    if dialect in ("postgresql", "generic"):
        events.append(r"(?P<dollar>\$)")
    return re.compile("|".join(events))


@functools.cache
def _plain_stretch(dialect: Dialect, delimiter: str) -> re.Pattern[str]:
    """Inside a statement: characters where no event can start, and simple quoted strings.

    A ``'...'`` without backslashes or doubled quotes ends at its second quote whatever the
    dialect or an ``E`` before it says, so it is skipped here in C rather than by a Python call
    per string. Skipping is possessive: nothing is ever given back.
    """
    specials = {delimiter[0], "'", '"', "-", "/"}
    if dialect == "mysql":
        specials |= {"#", "`"}
    if dialect == "sqlite":
        specials.add("`")
    if dialect in ("postgresql", "generic"):
        specials.add("$")
    plain = "[^" + "".join(re.escape(c) for c in sorted(specials)) + "]++"
    if delimiter[0] == "'":  # the delimiter comes before a quote: no shortcut through strings
        return re.compile(f"(?:{plain})*+")
    return re.compile(f"(?:{plain}|'[^'\\\\]*+'(?!'))*+")


class _Splitter:
    """The lexer's state: the delimiter in force and where the current statement started."""

    def __init__(self, sql: str, dialect: Dialect) -> None:
        self.sql = sql
        self.dialect: Dialect = dialect
        self.delimiter = ";"
        self.pieces: list[tuple[int, int]] = []  # (start, end) offsets
        self.start: int | None = None  # first significant character of the current statement

    def run(self) -> list[tuple[int, int]]:
        i, end = 0, len(self.sql)
        while i < end:
            i = self.between(i) if self.start is None else self.inside(i)
        if self.start is not None:
            self.pieces.append((self.start, end))
        return self.pieces

    def between(self, i: int) -> int:
        """Tokens between statements (white space, comments, DELIMITER lines, empty
        statements) up to the first character of the next statement, taken with its token."""
        sql, end = self.sql, len(self.sql)
        while i < end:
            if self.dialect == "mysql":
                moved = self.delimiter_command(i)
                if moved is not None:
                    i = moved
                    continue
            if sql.startswith(self.delimiter, i):
                i += len(self.delimiter)
                continue
            char = sql[i]
            if char.isspace():
                match = _NON_SPACE.search(sql, i + 1)
                i = match.start() if match else end
                continue
            comment_end = self.comment_end(i) if char in "-#/" else None
            if comment_end is not None:
                i = comment_end
                continue
            self.start = i
            return self.token_end(i) if char in "'\"`/$" else i + 1
        return end

    def inside(self, i: int) -> int:
        """Jump to the next event in the current statement and take it."""
        sql = self.sql
        plain = _plain_stretch(self.dialect, self.delimiter).match(sql, i)
        i = plain.end() if plain else i
        match = _next_event(self.dialect, self.delimiter).search(sql, i)
        if match is None:
            return len(sql)
        at, kind = match.start(), match.lastgroup
        if kind == "delimiter":
            assert self.start is not None
            self.pieces.append((self.start, at))
            self.start = None
            return at + len(self.delimiter)
        if kind in ("line", "hash"):
            return _line_end(sql, at)
        if kind == "block":
            return _block_comment_end(sql, at, nested=self.dialect in ("postgresql", "generic"))
        return self.token_end(at)

    def delimiter_command(self, i: int) -> int | None:
        """MySQL client's ``DELIMITER //``: valid at the start of a line, between statements."""
        if i and self.sql[i - 1] != "\n":
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
        """Past the quote, executable comment or dollar quote at ``i``; else past its character."""
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
        return i + 1


def _line_end(sql: str, i: int) -> int:
    end = sql.find("\n", i)
    return len(sql) if end < 0 else end


def _block_comment_end(sql: str, i: int, *, nested: bool) -> int:
    """Past the ``*/`` that closes the comment at ``i`` (PostgreSQL's nest)."""
    depth = 0
    for mark in _BLOCK_MARKS.finditer(sql, i):
        if mark[0] == "/*":
            depth = depth + 1 if nested or depth == 0 else depth
        else:
            depth -= 1
            if depth == 0:
                return mark.end()
    return len(sql)  # unterminated: the server will say so


def _quoted_end(sql: str, i: int, quote: str, backslash: bool) -> int:
    """Past the closing quote; a doubled quote is an escaped one, and so (MySQL, E'') is a
    backslashed character."""
    j = i + 1
    if not backslash:
        while True:
            k = sql.find(quote, j)
            if k < 0:
                return len(sql)
            if not sql.startswith(quote, k + 1):
                return k + 1
            j = k + 2
    special = _QUOTE_OR_BACKSLASH[quote]
    while True:
        match = special.search(sql, j)
        if match is None:
            return len(sql)
        k = match.start()
        if sql[k] == "\\" or sql.startswith(quote, k + 1):
            j = k + 2
        else:
            return k + 1


def _is_escape_string(sql: str, i: int) -> bool:
    """PostgreSQL ``E'...'`` strings treat backslash as an escape."""
    return i > 0 and sql[i - 1] in "eE" and (i < 2 or not _is_word(sql[i - 2]))


def _is_word(char: str) -> bool:
    return char.isalnum() or char in "_$"


def _dollar_quoted_end(sql: str, i: int) -> int:
    # $1 is a parameter and a$b an identifier, not the start of a dollar quote.
    if i > 0 and _is_word(sql[i - 1]):
        return i + 1
    match = _dollar_tag().match(sql, i)
    if match is None:
        return i + 1
    close = sql.find(match[0], match.end())
    return len(sql) if close < 0 else close + len(match[0])


@functools.cache
def _dollar_tag() -> re.Pattern[str]:
    """Compiled when first needed: its character classes span the BMP, and compiling them takes
    about 7 ms, which scripts without a dollar quote need not pay at every start (issue 21)."""
    return re.compile(_DOLLAR_TAG)


def _complete_for_sqlite(sql: str, pieces: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Re-join pieces split inside ``CREATE TRIGGER ... BEGIN ...; END``.

    SQLite's own ``complete_statement`` knows when a trigger body ends.
    """
    import sqlite3  # SQLite's files only

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
    statements = []
    line, counted = 1, 0  # pieces come in order: count the newlines once
    for start, end in pieces:
        text = sql[start:end].strip()
        if text:
            line += sql.count("\n", counted, start)
            counted = start
            statements.append(Statement(text, line))
    return statements
