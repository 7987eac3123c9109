"""The errors a person reads, free of any driver or API client.

Every error Lockstep reports derives from :class:`LockstepError`; its ``reason`` is the
CamelCase word the operator copies into condition reasons, which is why the class names carry
no "Error" suffix (N818). Pure modules raise and name these without reaching a database driver.
"""

from __future__ import annotations

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
