"""A failed Job's tool output reaches status and Events without the database password.

Flyway, Prisma and the other tools print what they like; some echo the URL they were given. The
operator scrubs the log tail and the message with the URL it passed to the Job.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from lockstep import constants
from lockstep.controller import outcome
from lockstep.model import parse_spec
from lockstep.planning.facts import JobView

PASSWORD = "QXZjk@qxzJK/78kqx"
URL = f"postgresql://app:{PASSWORD}@db:5432/shop"
SPEC = parse_spec(
    {
        "tool": "flyway",
        "image": "flyway/flyway",
        "database": {"engine": "postgresql", "urlSecretRef": {"name": "db", "key": "url"}},
    }
)


def failed_pod() -> dict[str, Any]:
    report = {"result": "Failed", "reason": "MigrationFailed", "message": f"cannot use {URL}"}
    terminated = {"exitCode": 1, "message": json.dumps(report)}
    return {
        "metadata": {"name": "shop-1-pod"},
        "status": {
            "containerStatuses": [
                {"name": constants.MIGRATE_CONTAINER, "state": {"terminated": terminated}}
            ]
        },
    }


class FakeCache:
    def pod_of_job(self, namespace: str, name: str) -> dict[str, Any]:
        return failed_pod()


class FakeApi:
    def read_log_tail(self, namespace: str, pod: str, container: str, limit_bytes: int) -> str:
        return f"ERROR: Unable to obtain connection from {URL}\nhost qxzJK/78kqx@db unknown\n"


def test_the_log_tail_and_the_message_are_scrubbed() -> None:
    job = JobView(name="shop-1", spec_hash="h", attempt=0, state="Failed")
    result = asyncio.run(
        outcome.read_outcome(FakeCache(), FakeApi(), "default", SPEC, job, URL)  # type: ignore[arg-type]
    )
    shown = result.message + result.log_tail
    assert "Unable to obtain connection" in result.log_tail
    for piece in ("QXZjk", "qxzJK", "78kqx"):
        assert piece not in shown, shown
