"""The operator and the plugin send their Kubernetes requests without the client's generated API
group classes (CoreV1Api, BatchV1Api, ...): importing one builds pydantic validators for every
method it has (29.2 MiB RSS and ~1 s CPU for the five the operator called,
bench/client_first_calls.py). What they send stays what those classes sent
(tests/support/raw_wire.py says what is checked); tests/integration/test_older_client.py checks
the same on client 35, which the plugin's standalone executable carries.
"""

from __future__ import annotations

import raw_wire


def test_no_generated_api_class_is_imported_and_the_wire_is_theirs() -> None:
    report = raw_wire.run_probe()
    assert report["loaded"] == []  # no kubernetes.client.api.core_v1_api and the like
    raw_wire.check_wire(report)
