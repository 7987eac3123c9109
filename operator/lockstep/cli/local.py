"""Local mode: `lockstep apply -f migration.yaml` with no cluster.

Reads DatabaseMigrations and the ConfigMaps they use from one YAML stream, refuses what the API
server would refuse (:mod:`lockstep.local.validation`), runs the same runner a migration Job runs
(:mod:`lockstep.local.running`) and prints the status the operator would write. The default
database is a SQLite file under `.lockstep/`, so a newcomer needs nothing else installed; when
that file stands in for another engine, one `note:` line says so.

Exit codes (also in `lockstep apply --help` and docs/local-mode.md): 0 every migration Ready,
1 at least one not Ready, 2 invalid input (nothing was run).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Final

import yaml

from lockstep import constants, database, errors, url_secrets
from lockstep.local import documents, running, validation

EXIT_READY: Final = 0
EXIT_NOT_READY: Final = 1
EXIT_INVALID_INPUT: Final = 2
EXIT_CODES_HELP: Final = (
    "exit codes: 0 every DatabaseMigration is Ready; 1 at least one is not Ready (its error "
    "line says why); 2 invalid input (unreadable file, an object the API server would refuse, "
    "a bad --database-url): nothing was run"
)
LocalResult = running.LocalResult


def apply_file(path: Path, database_url: str | None, state_dir: Path, output: str) -> int:
    try:
        objects = documents.read_objects(path)
    except documents.UnreadableFileError as error:
        return _refuse([f"error: {error}"])
    checked = [validation.check(o) for o in objects]
    problems = [f"error: {path}: {c.where}: {p}" for c in checked for p in c.problems]
    if problems:
        return _refuse(
            [*problems, "nothing was run: fix the file (the API server would refuse it too)"]
        )
    migrations = [c for c in checked if c.kind == constants.KIND]
    if not migrations:
        return _refuse([f"error: {path} has no {constants.KIND}; see examples/quickstart/"])
    for skipped in (c for c in checked if c.kind not in (constants.KIND, "ConfigMap", "Secret")):
        _note(f"skipped {skipped.where}: local mode applies DatabaseMigrations only")
    try:
        targets = [_target(m, database_url, state_dir) for m in migrations]
    except errors.InvalidDatabaseUrl as error:
        return _refuse([f"error: --database-url: {error}", "nothing was run"])
    except _EngineMismatchError as error:
        return _refuse([f"error: {path}: {error}", "nothing was run"])
    config_maps = {
        (c.namespace, c.name): running.SourceFiles.from_config_map(c.body)
        for c in checked
        if c.kind == "ConfigMap"
    }
    results = []
    for migration, target in zip(migrations, targets, strict=True):
        if target.substitute_note:
            _note(target.substitute_note)
        results.append(running.run_migration(migration.body, config_maps, target))
    print(render(results, output))
    return EXIT_READY if all(r.ready for r in results) else EXIT_NOT_READY


class _EngineMismatchError(ValueError):
    """spec.database.engine and the --database-url's scheme name different engines."""


def _target(checked: validation.Checked, url: str | None, state_dir: Path) -> running.Target:
    spec = checked.body.get("spec") or {}
    engine = str((spec.get("database") or {}).get("engine"))
    if url:
        identity = database.identity_from_url(url)  # InvalidDatabaseUrl: a safe message
        if identity.family != database.family_of(engine):  # type: ignore[arg-type]
            raise _EngineMismatchError(
                f"{checked.where}: spec.database.engine is {engine} but --database-url is a "
                f"{identity.engine} URL: pass a {engine} URL, or change the engine"
            )
        return running.Target(url, url_secrets.redact_url(url))
    file = state_dir / f"{checked.namespace}-{checked.name}.sqlite"
    database_spec = spec.get("database") or {}
    secret = database_spec.get("urlSecretRef") or {}
    source = f"Secret {secret.get('name')}" if secret else "spec.database.connection"
    shown = f"SQLite file {file} (stands in for {source})"
    note = None
    if engine != "sqlite":
        note = (
            f"{checked.where}: spec.database.engine is {engine}, but no --database-url was "
            f"given: running on the SQLite file {file} instead (pass --database-url to use "
            f"{engine})"
        )
    state_dir.mkdir(parents=True, exist_ok=True)
    return running.Target(f"sqlite:///{file}", shown, note)


def render(results: Iterable[running.LocalResult], output: str) -> str:
    """Text for people; `-o json` is always a list and `-o yaml` always one document per result,
    whatever the number of DatabaseMigrations, so that scripts need one parser."""
    statuses = [r.as_status() for r in results]
    if output == "json":
        return json.dumps(statuses, indent=2)
    if output == "yaml":
        return yaml.safe_dump_all(statuses, sort_keys=False).rstrip()
    return "\n".join(_text(r) for r in results)


def _text(result: running.LocalResult) -> str:
    state = "Ready" if result.ready else "NOT READY"
    revision = result.applied_revision or "none (empty database)"
    if not result.revision_read:
        revision = "not read (the run failed before reaching the database)"
    lines = [
        f"databasemigration/{result.name} (namespace {result.namespace})",
        f"  database:  {result.database}",
        f"  state:     {state} ({result.reason})",
        f"  revision:  {revision} (target {result.target})",
        f"  {'result' if result.ready else 'error'}:    {result.message}",
    ]
    return "\n".join(lines)


def _refuse(lines: Sequence[str]) -> int:
    print("\n".join(lines), file=sys.stderr)
    return EXIT_INVALID_INPUT


def _note(text: str) -> None:
    print(f"note: {text}", file=sys.stderr)
