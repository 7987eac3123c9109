"""Kubernetes timestamps (RFC 3339, UTC, "Z"): written and read in one place."""

from __future__ import annotations

from datetime import datetime
from typing import Any


def isoformat(moment: datetime) -> str:
    """Seconds precision, as status fields and condition transition times are written."""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse(value: Any) -> datetime | None:
    """A timestamp from the API (or a datetime already parsed); None when there is none."""
    if not value:
        return None
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
