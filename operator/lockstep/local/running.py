"""One DatabaseMigration of a local-mode file, run by the same runner a migration Job runs.

Takes objects the API server would accept (see :mod:`lockstep.local.validation`), writes the
ConfigMap's files into a private temporary directory, runs the runner and words the outcome as
the status the operator would write. Every message leaves through :func:`_safe`: the database
password is scrubbed and the temporary directory, gone by the time anyone reads the message, is
named by the ConfigMap it came from.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from lockstep import constants, errors, k8s_names, spec_history, url_secrets
from lockstep.model import Spec, SpecError, parse_spec
from lockstep.pod import run_plan, run_request, runner
from lockstep.tools import version_table

NOT_SUPPORTED_LOCALLY: Final = "NotSupportedLocally"
INTERNAL_ERROR: Final = "InternalError"

ObjectKey = tuple[str, str]  # (namespace, name)


@dataclass(frozen=True)
class SourceFiles:
    """A ConfigMap's files: `data` as text, `binaryData` decoded, as a volume mount has them."""

    files: Mapping[str, bytes]

    @classmethod
    def from_config_map(cls, body: Mapping[str, Any]) -> SourceFiles:
        data = (body.get("data") or {}).items()
        files = {str(k): (v or "").encode("utf-8", "surrogatepass") for k, v in data}
        for key, value in (body.get("binaryData") or {}).items():
            files[str(key)] = base64.b64decode(value or "")
        return cls(files)


@dataclass(frozen=True)
class Target:
    """Where one migration runs: the URL, how to show it, and what stands in for what."""

    url: str
    shown: str
    substitute_note: str | None = None


@dataclass(frozen=True)
class LocalResult:
    namespace: str
    name: str
    database: str  # redacted, or words
    ready: bool
    reason: str
    message: str
    applied_revision: str | None
    target: str
    run: Mapping[str, Any] | None
    revision_read: bool = True  # False: the run failed before the revision could be read

    def as_status(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "namespace": self.namespace,
            "database": self.database,
            "ready": self.ready,
            "reason": self.reason,
            "message": self.message,
            "appliedRevision": self.applied_revision,
            "targetRevision": self.target,
            "lastRun": dict(self.run) if self.run else None,
        }


def run_migration(
    body: Mapping[str, Any],
    config_maps: Mapping[ObjectKey, SourceFiles],
    where: Target,
) -> LocalResult:
    """Run one (already validated) DatabaseMigration; failures become a not-Ready result."""
    metadata = body.get("metadata") or {}
    namespace, name = str(metadata.get("namespace") or "default"), str(metadata.get("name"))
    target = str((body.get("spec") or {}).get("target") or "head")

    def failed(
        reason: str, message: str, source: Path | None = None, revision: str | None = None
    ) -> LocalResult:
        text = _safe(message, where.url, source, spec_source)
        read = revision is not None
        return LocalResult(
            namespace, name, where.shown, False, reason, text, revision or None, target, None, read
        )

    spec_source = "the ConfigMap"
    try:
        raw_spec = body.get("spec") or {}
        spec = parse_spec(raw_spec, spec_history.history_owner(namespace, name, raw_spec))
    except SpecError as error:
        return failed(constants.Reason.INVALID_SPEC, str(error))
    if not spec.uses_built_in_runner or spec.source_config_map is None:
        return failed(
            NOT_SUPPORTED_LOCALLY,
            f"local mode runs built-in sources (tool sql or alembic with spec.source); tool "
            f"{spec.tool} runs from its image {spec.image} in a cluster",
        )
    spec_source = f"ConfigMap {spec.source_config_map}"
    files = config_maps.get((namespace, spec.source_config_map))
    if files is None:
        return failed(constants.Reason.CONFIG_MAP_NOT_FOUND, _missing(spec, namespace, config_maps))
    with tempfile.TemporaryDirectory(prefix="lockstep-") as directory:
        source = Path(directory)
        try:
            _write_source(source, files.files)
            result = runner.run(_request(spec, source, where.url))
        except errors.LockstepError as error:
            revision = _revision_after_failure(error, spec, source, where.url)
            return failed(error.reason, str(error), source, revision)
        except Exception as error:  # noqa: BLE001 - any driver or file error, as one line
            return failed(INTERNAL_ERROR, f"{type(error).__name__}: {error}", source)
    run = json.loads(result.to_json())
    reason = constants.Reason.SUCCEEDED if result.applied else constants.Reason.UP_TO_DATE
    return LocalResult(
        namespace,
        name,
        where.shown,
        True,
        reason,
        _safe(result.summary(), where.url, None, spec_source),
        result.to_revision,
        spec.target,
        run,
    )


def _revision_after_failure(
    error: errors.LockstepError, spec: Spec, source: Path, url: str
) -> str | None:
    """The revision the database is at after a failed run ("" when empty), None if unknown.

    Read with the plan's read-only query, so that a failure says where the database stands, not
    only where it was meant to go.
    """
    if isinstance(error, errors.DatabaseUnavailable | errors.InvalidDatabaseUrl):
        return None
    try:
        plan = run_plan.render_plan(_request(spec, source, url), salt="")
    except Exception:  # noqa: BLE001 - a second failure must not hide the first one
        return None
    return plan.current or ""


def _request(spec: Spec, source: Path, url: str) -> run_request.RunRequest:
    return run_request.RunRequest(
        tool=spec.tool,  # type: ignore[arg-type]  # sql or alembic, checked by the caller
        source_dir=source,
        database_url=url,
        target=spec.target,
        allow_downgrade=spec.downgrade_allowed,
        lock_wait_seconds=float(spec.timeouts.lock_wait_seconds),
        statement_lock_timeout=spec.timeouts.statement_lock_timeout,
        **version_table.run_options(spec),
    )


def _missing(spec: Spec, namespace: str, config_maps: Mapping[ObjectKey, SourceFiles]) -> str:
    wanted = spec.source_config_map
    elsewhere = sorted(ns for ns, name in config_maps if name == wanted)
    if elsewhere:
        return (
            f"ConfigMap {wanted} is in namespace {', '.join(elsewhere)}, not in {namespace} "
            f"where this DatabaseMigration is: a source must be in the migration's namespace "
            f"(set the same metadata.namespace on both)"
        )
    return (
        f"ConfigMap {wanted} (namespace {namespace}) is not in the file: put it in the same "
        "YAML stream"
    )


def _safe(message: str, url: str, source: Path | None, source_name: str) -> str:
    """``message`` without the password, and naming the ConfigMap instead of a gone temp dir."""
    if source is not None:
        message = message.replace(f"{source}{os.sep}", f"{source_name} key ")
        message = message.replace(str(source), source_name)
    return url_secrets.scrub(message, url)


def _write_source(directory: Path, files: Mapping[str, bytes]) -> None:
    """Write a ConfigMap's keys as files, never outside ``directory``.

    The keys were checked against Kubernetes' rules already; this refuses anything that would
    still leave the directory (or follow a link) as a second line of defence.
    """
    for file_name, content in files.items():
        target = directory / file_name
        if k8s_names.config_map_key_problem(file_name) or target.parent != directory:
            raise ValueError(f"refusing to write ConfigMap key {file_name!r} outside {directory}")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        with os.fdopen(os.open(target, flags, 0o600), "wb") as handle:
            handle.write(content)
