"""Versioned SQL migration files: naming, ordering, checksums and statements.

A source directory holds ``V<version>__<description>.sql`` files (apply) and
optional ``U<version>__<description>.sql`` files (undo).  ``<version>`` is an
integer or a dotted version (``1``, ``2``, ``1.1``, ``010``), compared
numerically part by part, so ``1.1 < 1.10 < 2`` and ``010`` is ``10``.  Hidden
entries (ConfigMap mounts add ``..data`` and friends) and files that do not
end in ``.sql`` are ignored.

Pure except :func:`load_directory`, which reads the directory.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import re
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

from lockstep import errors

Version = tuple[int, ...]
Dialect = Literal["postgresql", "mysql", "sqlite", "generic"]
FileKind = Literal["V", "U"]

EXPECTED_NAME: Final = (
    "V<version>__<description>.sql (apply) or U<version>__<description>.sql (undo), "
    "where <version> is a number or a dotted number such as 1, 2 or 1.1 "
    "(e.g. V1__create_customers.sql)"
)
MAX_VERSION_LENGTH: Final = 50  # the history table's version column
_DELIMITER_COMMAND = re.compile(r"[ \t]*DELIMITER[ \t]+(\S+)[ \t]*(?:\r?\n|$)", re.I)
_NAME = re.compile(r"^(?P<kind>[VU])(?P<version>\d+(?:\.\d+)*)__(?P<description>.+)\.sql$")


# --------------------------------------------------------------------------- versions


def version_key(version: str) -> Version:
    """Numeric sort key of a version: ``"1.10"`` → ``(1, 10)``; ``"1.0"`` equals ``"1"``.

    Raises ``ValueError`` for anything but dot-separated non-negative integers.
    """
    if not re.fullmatch(r"\d+(?:\.\d+)*", version):
        raise ValueError(f"{version!r} is not a version such as 1, 2 or 1.1")
    parts = [int(part) for part in version.split(".")]
    # Trailing zeros carry no order (1.0 == 1), so they must not make two versions differ.
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def canonical_version(version: str) -> str:
    """The form stored in the history table: ``"001"`` → ``"1"``, ``"1.0"`` → ``"1"``."""
    return ".".join(str(part) for part in version_key(version))


# --------------------------------------------------------------------------- files


@dataclass(frozen=True)
class Statement:
    """One SQL statement and the 1-based line of the file where it starts."""

    text: str
    line: int

    def shortened(self, limit: int = 120) -> str:
        """One line, at most ``limit`` characters: for messages and logs."""
        flat = " ".join(self.text.split())
        return flat if len(flat) <= limit else flat[: limit - 3] + "..."


@dataclass(frozen=True)
class SqlFile:
    path: Path
    kind: FileKind
    version: str  # canonical
    description: str
    checksum: str  # sha256 of the file's bytes, hex
    text: str = field(repr=False)

    @property
    def name(self) -> str:
        return self.path.name

    def statements(self, dialect: Dialect) -> list[Statement]:
        return split_statements(self.text, dialect)


@dataclass(frozen=True)
class Migration:
    """One version: its apply file and, when there is one, its undo file."""

    version: str
    up: SqlFile
    down: SqlFile | None

    @property
    def key(self) -> Version:
        return version_key(self.version)

    @property
    def description(self) -> str:
        return self.up.description


@dataclass(frozen=True)
class MigrationSet:
    directory: Path
    migrations: tuple[Migration, ...]  # ascending by version

    @property
    def versions(self) -> list[str]:
        return [migration.version for migration in self.migrations]

    def find(self, version: str) -> Migration | None:
        """The migration whose version equals ``version`` numerically (``01`` finds ``1``)."""
        try:
            key = version_key(version)
        except ValueError:
            return None
        return next((m for m in self.migrations if m.key == key), None)


def parse_file_name(name: str) -> tuple[FileKind, str, str] | None:
    """``(kind, canonical version, description)`` of a migration file name, or None."""
    match = _NAME.match(name)
    if match is None:
        return None
    kind: FileKind = "V" if match["kind"] == "V" else "U"
    description = match["description"].replace("_", " ").strip()
    return kind, canonical_version(match["version"]), description


def read_sql_file(path: Path) -> SqlFile:
    parsed = parse_file_name(path.name)
    if parsed is None:
        raise errors.InvalidSource(
            f"{path.name}: bad migration file name; expected {EXPECTED_NAME}"
        )
    kind, version, description = parsed
    if len(version) > MAX_VERSION_LENGTH:
        raise errors.InvalidSource(
            f"{path.name}: version longer than {MAX_VERSION_LENGTH} characters"
        )
    if version_key(version) == (0,):
        raise errors.InvalidSource(
            f"{path.name}: version 0 is reserved (target 0 means 'nothing applied'); start at 1"
        )
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise errors.InvalidSource(
            f"{path.name}: not UTF-8 text (byte {error.start}); save the file as UTF-8"
        ) from None
    checksum = hashlib.sha256(data).hexdigest()
    return SqlFile(path, kind, version, description, checksum, text)


def _candidates(directory: Path) -> list[Path]:
    if not directory.is_dir():
        raise errors.InvalidSource(
            f"migration source {directory} does not exist or is not a directory"
        )
    return sorted(
        entry
        for entry in directory.iterdir()
        if not entry.name.startswith(".") and entry.name.endswith(".sql") and entry.is_file()
    )


def load_directory(directory: Path) -> MigrationSet:
    """Read and check every migration file in ``directory``.

    Every problem found is reported at once, in one :class:`InvalidSource`.
    """
    problems: list[str] = []
    files: list[SqlFile] = []
    for path in _candidates(directory):
        try:
            files.append(read_sql_file(path))
        except errors.InvalidSource as error:
            problems.append(str(error))
    migrations = _pair(files, problems)
    if problems:
        raise errors.InvalidSource(
            f"migration source {directory} has {len(problems)} problem(s): " + "; ".join(problems)
        )
    return MigrationSet(directory, tuple(sorted(migrations, key=lambda m: m.key)))


def _pair(files: Iterable[SqlFile], problems: list[str]) -> list[Migration]:
    ups: dict[str, SqlFile] = {}
    downs: dict[str, SqlFile] = {}
    for sql_file in files:
        chosen = ups if sql_file.kind == "V" else downs
        other = chosen.get(sql_file.version)
        if other is not None:
            problems.append(
                f"{other.name} and {sql_file.name} both have version {sql_file.version}; "
                f"every version needs exactly one {sql_file.kind} file"
            )
            continue
        chosen[sql_file.version] = sql_file
    for version, down in downs.items():
        if version not in ups:
            problems.append(
                f"{down.name} undoes version {version}, but there is no V{version}__*.sql file"
            )
    return [Migration(version, up, downs.get(version)) for version, up in ups.items()]


# --------------------------------------------------------------------------- statements


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
