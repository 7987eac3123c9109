"""What the pod commands share: the database URL from the pod's environment, and the report of
a failure (stderr, the result file the container's termination message is read from), scrubbed
of the database passwords."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lockstep import constants, db_connection, errors, url_secrets
from lockstep.contract import report


def environ_url() -> str | None:
    """The pod's database URL: $DATABASE_URL, or composed from the split `LOCKSTEP_DB_*` parts
    (spec.database.connection), with the driver parameters the Job adds (TLS files)."""
    return db_connection.url_from_environ(os.environ)


def database_url(result_file: str) -> str | None:
    """The pod's database URL, or None after saying why not (on stderr and in the result file)."""
    try:
        url = environ_url()
        problem = "DATABASE_URL is not set"
    except db_connection.ConnectionSpecError as error:
        url, problem = None, str(error)
    if not url:
        print(
            f"error: {problem}: the Job passes the database from the Secret named in "
            "spec.database.urlSecretRef or spec.database.connection",
            file=sys.stderr,
        )
        write_result(result_file, report.failure("InvalidSource", problem))
    return url or None


def helper_url() -> str | None:
    """The URL for `lock` and `dburl`, or None after saying on stderr what is missing."""
    try:
        url = environ_url()
    except db_connection.ConnectionSpecError as error:
        print(f"error: {error}", file=sys.stderr)
        return None
    if not url:
        print(f"error: ${constants.DATABASE_URL_ENV} is not set", file=sys.stderr)
    return url or None


def failed(result_file: str, error: errors.LockstepError) -> int:
    """Say why on stderr and in the result file; the exit code tells some reasons apart."""
    message = without_secrets(str(error))
    print(f"error ({error.reason}): {message}", file=sys.stderr)
    payload = report.failure(error.reason, message)
    # Only a run that checked its plan imported run_plan (and SQLAlchemy with it): a failure
    # of any other run need not load them to know it is no PlanChanged.
    run_plan = sys.modules.get("lockstep.pod.run_plan")
    if run_plan is not None and isinstance(error, run_plan.PlanChanged):
        # The new plan, so that it can be shown for approval without another plan Job.
        payload["plan"] = error.plan.compact(report.HALF_BUDGET)
    write_result(result_file, payload)
    return report.EXIT_CODES.get(error.reason, report.EXIT_FAILED)


def without_secrets(text: str) -> str:
    """``text`` scrubbed of the pod's database passwords, whatever code worded it.

    The last gate before stderr and the termination message (so status and Events): a message
    built anywhere below may quote a URL or a driver's words, and only here are both URLs known.
    """

    with contextlib.suppress(db_connection.ConnectionSpecError):
        composed = environ_url()
        if composed:
            text = url_secrets.scrub(text, composed)
    for name in (constants.DATABASE_URL_ENV, constants.SHADOW_DATABASE_URL_ENV):
        url = os.environ.get(name)
        if url:
            text = url_secrets.scrub(text, url)
    password = os.environ.get(db_connection.PASSWORD_ENV)
    if password:
        # The composed URL's scrub hides its encoded forms; the raw value, whatever its length.
        text = text.replace(password, url_secrets.REDACTED)
    return text


def write_result(path: str, payload: Mapping[str, Any]) -> None:
    """Best effort: outside a pod there is no termination log, and that is fine."""
    with contextlib.suppress(OSError):
        Path(path).write_text(report.message_text(payload))
