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

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

from lockstep import errors
from lockstep.sql_splitter import Dialect as Dialect
from lockstep.sql_splitter import Statement as Statement
from lockstep.sql_splitter import split_statements as split_statements

Version = tuple[int, ...]
FileKind = Literal["V", "U"]

EXPECTED_NAME: Final = (
    "V<version>__<description>.sql (apply) or U<version>__<description>.sql (undo), "
    "where <version> is a number or a dotted number such as 1, 2 or 1.1 "
    "(e.g. V1__create_customers.sql)"
)
MAX_VERSION_LENGTH: Final = 50  # the history table's version column
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
    if "\x00" in text:
        # No database accepts NUL in SQL text, and SQLite's statement check raises on it.
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise errors.InvalidSource(
            f"{path.name}: line {line} has a NUL character (\\0), which no database accepts "
            "in SQL text; remove it (was the file saved as UTF-16?)"
        )
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
