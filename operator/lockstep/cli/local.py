"""Local mode: `lockstep apply -f migration.yaml` with no cluster.

Reads DatabaseMigrations and the ConfigMaps they use from one YAML stream, runs the same runner a
migration Job runs, and prints the status the operator would write. The default database is a
SQLite file under `.lockstep/`, so a newcomer needs nothing else installed.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lockstep import constants, database, errors, k8s_names
from lockstep.model import SpecError, parse_spec
from lockstep.pod import run_request, runner


@dataclass(frozen=True)
class LocalResult:
    namespace: str
    name: str
    database: str  # redacted
    ready: bool
    reason: str
    message: str
    applied_revision: str | None
    target: str
    run: Mapping[str, Any] | None

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


def apply_file(path: Path, database_url: str | None, state_dir: Path, output: str) -> int:
    try:
        documents = load_documents(path)
    except (OSError, yaml.YAMLError) as error:
        print(f"error: cannot read {path}: {error}", file=sys.stderr)
        return 2
    problems = [f"error: {path}: {problem}" for problem in invalid_objects(documents)]
    if problems:
        print("\n".join(problems), file=sys.stderr)
        print("nothing was run: fix the file (the API server would refuse it too)", file=sys.stderr)
        return 2
    migrations = [d for d in documents if d.get("kind") == constants.KIND]
    if not migrations:
        print(f"error: {path} has no {constants.KIND}; see examples/quickstart/", file=sys.stderr)
        return 2
    config_maps = {
        _key(d): {str(k): str(v) for k, v in (d.get("data") or {}).items()}
        for d in documents
        if d.get("kind") == "ConfigMap"
    }
    results = [apply_one(m, config_maps, database_url, state_dir) for m in migrations]
    print(render(results, output))
    return 0 if all(r.ready for r in results) else 1


def invalid_objects(documents: Iterable[Mapping[str, Any]]) -> list[str]:
    """What the API server would refuse in these objects: names, namespaces, ConfigMap keys.

    Checked before anything is written: a ConfigMap key becomes a file name and an object's
    namespace and name become the SQLite file's name, so a key such as ``../../x`` or a name
    such as ``../x`` must never reach the disk.
    """
    problems: list[str] = []
    for document in documents:
        kind = str(document.get("kind") or "object")
        metadata = document.get("metadata") or {}
        name = str(metadata.get("name") or "")
        namespace = str(metadata.get("namespace") or "default")
        where = f"{kind} {namespace}/{name or '(no name)'}"
        name_problem = k8s_names.subdomain_problem(name)
        if name_problem:
            problems.append(f"{where}: metadata.name {name!r}: {name_problem}")
        namespace_problem = k8s_names.label_problem(namespace)
        if namespace_problem:
            problems.append(f"{where}: metadata.namespace {namespace!r}: {namespace_problem}")
        if kind != "ConfigMap":
            continue
        for field in ("data", "binaryData"):
            for key in document.get(field) or {}:
                key_problem = k8s_names.config_map_key_problem(str(key))
                if key_problem:
                    problems.append(f"{where}: {field} key {str(key)!r}: {key_problem}")
    return problems


def load_documents(path: Path) -> list[dict[str, Any]]:
    with path.open() as stream:
        return [d for d in yaml.safe_load_all(stream) if isinstance(d, dict)]


def apply_one(
    body: Mapping[str, Any],
    config_maps: Mapping[tuple[str, str], Mapping[str, str]],
    database_url: str | None,
    state_dir: Path,
) -> LocalResult:
    namespace, name = _key(body)
    url = database_url or _sqlite_url(state_dir, namespace, name)
    shown = database.redact_url(url)

    def failed(reason: str, message: str, run: Mapping[str, Any] | None = None) -> LocalResult:
        return LocalResult(namespace, name, shown, False, reason, message, None, "?", run)

    try:
        spec = parse_spec(body.get("spec") or {})
    except SpecError as error:
        return failed(constants.Reason.INVALID_SPEC, str(error))
    if not spec.uses_built_in_runner or spec.source_config_map is None:
        return failed(
            "NotSupportedLocally",
            f"local mode runs built-in sources (tool sql or alembic with spec.source); tool "
            f"{spec.tool} runs from its image {spec.image} in a cluster",
        )
    files = config_maps.get((namespace, spec.source_config_map))
    if files is None:
        return failed(
            constants.Reason.CONFIG_MAP_NOT_FOUND,
            f"ConfigMap {spec.source_config_map} is not in the file: "
            "put it in the same YAML stream",
        )
    with tempfile.TemporaryDirectory(prefix="lockstep-") as source:
        _write_source(Path(source), files)
        request = run_request.RunRequest(
            tool=spec.tool,  # type: ignore[arg-type]  # sql or alembic, checked above
            source_dir=Path(source),
            database_url=url,
            target=spec.target,
            allow_downgrade=spec.downgrade_allowed,
            lock_wait_seconds=float(spec.timeouts.lock_wait_seconds),
            statement_lock_timeout=spec.timeouts.statement_lock_timeout,
        )
        try:
            result = runner.run(request)
        except errors.LockstepError as error:
            return failed(error.reason, str(error))
    run = json.loads(result.to_json())
    return LocalResult(
        namespace,
        name,
        shown,
        True,
        constants.Reason.SUCCEEDED if result.applied else constants.Reason.UP_TO_DATE,
        describe(result),
        result.to_revision,
        spec.target,
        run,
    )


def describe(result: run_request.RunResult) -> str:
    if not result.applied:
        return f"up to date at revision {result.to_revision or 'none'}: nothing to apply"
    moved = f"{result.from_revision or 'empty'} → {result.to_revision or 'empty'}"
    verb = "rolled back" if result.direction == "down" else "applied"
    return (
        f"{verb} {len(result.applied)} migration(s) ({', '.join(result.applied)}): {moved} "
        f"in {result.duration_seconds:.2f}s"
    )


def render(results: Iterable[LocalResult], output: str) -> str:
    statuses = [r.as_status() for r in results]
    if output == "json":
        return json.dumps(statuses if len(statuses) > 1 else statuses[0], indent=2)
    if output == "yaml":
        return yaml.safe_dump_all(statuses, sort_keys=False).rstrip()
    return "\n".join(_text(r) for r in results)


def _text(result: LocalResult) -> str:
    state = "Ready" if result.ready else "NOT READY"
    lines = [
        f"databasemigration/{result.name} (namespace {result.namespace})",
        f"  database:  {result.database}",
        f"  state:     {state} ({result.reason})",
        f"  revision:  {result.applied_revision or '-'} (target {result.target})",
        f"  {'result' if result.ready else 'error'}:    {result.message}",
    ]
    return "\n".join(lines)


def _write_source(directory: Path, files: Mapping[str, str]) -> None:
    """Write a ConfigMap's keys as files, never outside ``directory``.

    The keys were checked against Kubernetes' rules already; this refuses anything that would
    still leave the directory (or follow a link) as a second line of defence.
    """
    for file_name, content in files.items():
        target = directory / file_name
        if k8s_names.config_map_key_problem(file_name) or target.parent != directory:
            raise ValueError(f"refusing to write ConfigMap key {file_name!r} outside {directory}")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        with os.fdopen(os.open(target, flags, 0o600), "w", encoding="utf-8") as handle:
            handle.write(content)


def _sqlite_url(state_dir: Path, namespace: str, name: str) -> str:
    state_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{state_dir / f'{namespace}-{name}.sqlite'}"


def _key(body: Mapping[str, Any]) -> tuple[str, str]:
    metadata = body.get("metadata") or {}
    return (str(metadata.get("namespace") or "default"), str(metadata.get("name") or "?"))
