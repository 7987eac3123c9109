"""The errors a person reads, free of any driver or API client.

Every error Lockstep reports derives from :class:`LockstepError`; its ``reason`` is the
CamelCase word the operator copies into condition reasons, which is why the class names carry
no "Error" suffix (N818). Pure modules raise and name these without reaching a database driver.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar


class LockstepError(Exception):
    """An error a person reads: the message says what, where and what to do.

    ``reason`` is a CamelCase word the operator copies into condition reasons.
    """

    reason: ClassVar[str] = "Error"

    @property
    def message(self) -> str:
        return str(self)


class InvalidDatabaseUrl(LockstepError):  # noqa: N818
    reason = "InvalidDatabaseUrl"


class DatabaseUnavailable(LockstepError):  # noqa: N818
    reason = "DatabaseUnavailable"


# --------------------------------------------------------------------------- tool adapters


class UnknownTool(LockstepError):  # noqa: N818
    """``spec.tool`` names no adapter; the message lists the known tools."""

    reason = "UnknownTool"


class DowngradeUnsupported(LockstepError):  # noqa: N818
    """The tool cannot go down; the message says what to do instead."""

    reason = "DowngradeUnsupported"


class TargetUnsupported(LockstepError):  # noqa: N818
    """The tool cannot migrate to that target (e.g. Prisma deploys only everything)."""

    reason = "TargetUnsupported"


# The errors of a migration run (the built-in runner and the commands of migration pods).
# The class names double as condition reasons, hence no "Error" suffix.


class InvalidSource(LockstepError):  # noqa: N818
    """The migration source cannot be used as it is (names, duplicates, missing files)."""

    reason = "InvalidSource"


class InvalidRequest(LockstepError):  # noqa: N818
    """The run's parameters are wrong (unknown tool, malformed timeout)."""

    reason = "InvalidSpec"


class InvalidTarget(LockstepError):  # noqa: N818
    reason = "InvalidTarget"


class ChecksumMismatch(LockstepError):  # noqa: N818
    reason = "ChecksumMismatch"


class VersionTableInUse(LockstepError):  # noqa: N818
    """Another DatabaseMigration records in this version table: sharing it mixes histories."""

    reason = "VersionTableInUse"


class BaselineRefused(LockstepError):  # noqa: N818
    """spec.baseline cannot adopt this database: it has a history, or another baseline."""

    reason = "BaselineRefused"


class DowngradeForbidden(LockstepError):  # noqa: N818
    reason = "DowngradeForbidden"


class MigrationFailed(LockstepError):  # noqa: N818
    """A migration failed and nothing of it stayed applied (rolled back, or never started)."""

    reason = "MigrationFailed"

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None) -> None:
        super().__init__(message)
        self.file = file
        self.line = line


class PartiallyApplied(LockstepError):  # noqa: N818
    """A migration stopped half-way on a database without transactional DDL."""

    reason = "PartiallyApplied"

    def __init__(
        self,
        message: str,
        *,
        version: str | None = None,
        ran_lines: Sequence[int] = (),
        failed_line: int | None = None,
    ) -> None:
        super().__init__(message)
        self.version = version
        self.ran_lines = list(ran_lines)
        self.failed_line = failed_line


class DatabaseQueryFailed(LockstepError):  # noqa: N818
    """A query of Lockstep's own (not a migration's) failed."""

    reason = "DatabaseError"
