"""Container statuses as a kubelet reports them, for the bench's stand-ins and seeded history."""

from __future__ import annotations

from typing import Any


def terminated(
    name: str, image: str, started: str, ended: str, message: str | None
) -> dict[str, Any]:
    """A container that exited 0 (`message`: its termination message, if it wrote one)."""
    state: dict[str, Any] = {
        "exitCode": 0,
        "reason": "Completed",
        "startedAt": started,
        "finishedAt": ended,
    }
    if message:
        state["message"] = message
    return {
        "name": name,
        "state": {"terminated": state},
        "lastState": {},
        "ready": False,
        "restartCount": 0,
        "image": image,
        "imageID": "",
        "started": False,
    }
