"""spec.versionTable and spec.baseline: where a tool keeps its history, and where it starts (pure).

Parsed apart from the rest of the spec (lockstep.model) because the names end up in SQL: only
plain identifiers pass, the CRD's patterns word for word (a unit test compares them), and every
place that writes one quotes it all the same.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

# A plain SQL identifier (quoted all the same wherever Lockstep writes it), at most 63 characters
# (PostgreSQL's limit), so no value can change the statement it is spliced into.
IDENTIFIER_PATTERN: Final = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"
BASELINE_VERSION_PATTERN: Final = r"^[0-9]+(\.[0-9]+)*$"


class HistorySpecError(ValueError):
    """A wrong spec.versionTable or spec.baseline; `field` is its path under spec."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class VersionTable:
    """spec.versionTable: where the tool records what it applied (None: the tool's default)."""

    name: str | None = None
    schema: str | None = None


def parse_version_table(raw: Mapping[str, Any], tool: str) -> VersionTable:
    if raw.get("name") is not None and tool in ("prisma", "django"):
        raise HistorySpecError(
            "versionTable.name",
            f"tool {tool} has a fixed table name; set only versionTable.schema, to where "
            f"the tool keeps it",
        )
    names = {}
    for key in ("name", "schema"):
        value = raw.get(key)
        if value is not None and not (
            isinstance(value, str) and re.match(IDENTIFIER_PATTERN, value)
        ):
            raise HistorySpecError(
                f"versionTable.{key}",
                f"{value!r} is not a plain SQL name: letters, digits and _, not starting with a "
                f"digit, at most 63 characters",
            )
        names[key] = value
    return VersionTable(name=names["name"], schema=names["schema"])


def parse_baseline(baseline: Mapping[str, Any], tool: str) -> str | None:
    if not baseline:
        return None
    if tool != "sql":
        raise HistorySpecError(
            "baseline",
            f"is for tool sql; tool {tool} baselines through its own configuration "
            f"(see docs/existing-databases.md)",
        )
    version = baseline.get("version")
    if not isinstance(version, str) or not re.match(BASELINE_VERSION_PATTERN, version):
        raise HistorySpecError(
            "baseline.version", f"{version!r} is not a version such as 3 or 1.2 (as in V3__x.sql)"
        )
    return version


# The suffix kustomize's configMapGenerator appends to a ConfigMap's name: "-" and the first ten
# characters of a hash spelled without vowels or 0/1/3 (kustomize's api/hasher: encode). It
# changes with every edit of the content, so it is not part of the migration set's name.
KUSTOMIZE_HASH_SUFFIX: Final = re.compile(r"-[2456789bcdfghkmt]{10}$")


def migration_set_name(config_map: str) -> str:
    """The ConfigMap's name without kustomize's content hash: the same set after every edit.

    GitOps repositories generate the migrations ConfigMap (the name gets a new suffix with each
    SQL change, and kustomize rewrites the DatabaseMigration's reference to it). Keyed by the
    full name, each change started a fresh history and re-ran V1 on a database that had it.
    """
    return KUSTOMIZE_HASH_SUFFIX.sub("", config_map)


def history_owner(namespace: str, name: str, raw_spec: Mapping[str, Any]) -> str:
    """Whose history a run keeps: the migration set, not the resource that applies it.

    Two DatabaseMigrations that apply one ConfigMap of migrations (expand and contract: one runs
    to an earlier target before the rollout, the other to head after it) are one history: the
    second must see what the first applied. Two services with migration sets of their own keep
    two. So for a built-in source the owner is its ConfigMap, named without kustomize's content
    hash (:func:`migration_set_name`), so that an edited, renamed ConfigMap stays the same set;
    for a tool in an image, which Lockstep cannot look into, it is the DatabaseMigration. The
    text is shown in messages and recorded in the claims registry; its hash names tool sql's
    table (tools.version_table).
    """
    source = raw_spec.get("source")
    config_map = source.get("configMapRef") if isinstance(source, Mapping) else None
    if isinstance(config_map, Mapping) and isinstance(config_map.get("name"), str):
        return f"ConfigMap {namespace}/{migration_set_name(config_map['name'])}"
    return f"DatabaseMigration {namespace}/{name}"
