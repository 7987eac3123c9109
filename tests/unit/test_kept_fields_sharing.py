"""The cache shares the strings that repeat across objects (keys, short values), not long ones."""

from __future__ import annotations

import json

from lockstep.controller import kept_fields

POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {
        "name": "m-1-abc-x",
        "namespace": "shop",
        "labels": {"app.kubernetes.io/managed-by": "lockstep", "lockstep.dev/phase": "migrate"},
    },
    "status": {
        "phase": "Succeeded",
        "containerStatuses": [
            {
                "name": "migrate",
                "state": {
                    "terminated": {"exitCode": 0, "reason": "Completed", "message": "x" * 200}
                },
            }
        ],
    },
}


def decoded() -> dict[str, object]:
    """A body decoded on its own, as each watch event's is: no string shared with another."""
    return json.loads(json.dumps(POD))  # type: ignore[no-any-return]


def test_keys_and_short_values_of_two_bodies_are_one_object_each() -> None:
    first, second = kept_fields.job_pod(decoded()), kept_fields.job_pod(decoded())
    key = next(k for k in first["metadata"]["labels"] if k.startswith("app."))
    other = next(k for k in second["metadata"]["labels"] if k.startswith("app."))
    assert key is other
    assert first["metadata"]["labels"][key] is second["metadata"]["labels"][other]
    assert first["status"]["phase"] is second["status"]["phase"]
    state = first["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (
        state["reason"] is second["status"]["containerStatuses"][0]["state"]["terminated"]["reason"]
    )


def test_long_values_are_kept_as_they_are_and_equal() -> None:
    first, second = kept_fields.job_pod(decoded()), kept_fields.job_pod(decoded())
    message = first["status"]["containerStatuses"][0]["state"]["terminated"]["message"]
    again = second["status"]["containerStatuses"][0]["state"]["terminated"]["message"]
    assert message == again == "x" * 200
    assert message is not again


def test_a_migration_copy_equals_its_body() -> None:
    body = json.loads(json.dumps({**POD, "kind": "DatabaseMigration", "spec": {"a": [1, "b"]}}))
    kept = kept_fields.migration(body)
    assert kept["spec"] == body["spec"]
    assert kept["metadata"] == body["metadata"]
