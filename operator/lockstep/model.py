"""Typed views of a DatabaseMigration: the spec as parsed from the resource body, and its hash.

Pure: no I/O. The CRD schema rejects most bad input at apply time; `parse_spec` re-checks what the
operator relies on, so a resource created before the schema existed still gets a clear error.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, cast

from lockstep import constants, db_connection, pod_template, spec_history
from lockstep.pod_template import PodTemplate
from lockstep.spec_history import (
    BASELINE_VERSION_PATTERN as BASELINE_VERSION_PATTERN,
)
from lockstep.spec_history import (
    IDENTIFIER_PATTERN as IDENTIFIER_PATTERN,
)
from lockstep.spec_history import (
    VersionTable as VersionTable,
)

Tool = Literal["alembic", "flyway", "prisma", "knex", "django", "sequelize", "sql"]
Engine = Literal["postgresql", "mysql", "mariadb", "sqlite"]
When = Literal["BeforeRollout", "AfterRollout"]
Approval = Literal["None", "Destructive", "Always"]

TOOLS: tuple[Tool, ...] = ("alembic", "flyway", "prisma", "knex", "django", "sequelize", "sql")
ENGINES: tuple[Engine, ...] = ("postgresql", "mysql", "mariadb", "sqlite")
BUILT_IN_SOURCE_TOOLS: frozenset[str] = frozenset({"sql", "alembic"})

# Fields that change what a migration Job does. `suspend`, `retry`, `approval` and `driftCheck`
# steer the operator, not the Job, so editing them must not start a new run.
RUN_FIELDS: tuple[str, ...] = (
    "tool",
    "image",
    "source",
    "target",
    "database",
    "command",
    "args",
    "workingDir",
    "env",
    "envFrom",
    "serviceAccountName",
    "resources",
    "nodeSelector",
    "tolerations",
    "imagePullSecrets",
    "downgrade",
    "timeouts",
    "verify",
    "podTemplate",
    "volumeMounts",
    "securityContext",
    "versionTable",
    "baseline",
)


# spec.timeouts.statementLockTimeout: the CRD's pattern, word for word (a unit test compares
# them), so that the runner accepts exactly what the API server accepts.
STATEMENT_LOCK_TIMEOUT_PATTERN: Final = constants.STATEMENT_LOCK_TIMEOUT_PATTERN


class SpecError(ValueError):
    """A spec the operator cannot act on. `field` is the JSON path, for the person fixing it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"spec.{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class SecretKeyRef:
    name: str
    key: str


@dataclass(frozen=True)
class Retry:
    limit: int = 3
    backoff_seconds: int = 30
    max_backoff_seconds: int = 600


@dataclass(frozen=True)
class Timeouts:
    job_seconds: int = 3600
    lock_wait_seconds: int = 600
    statement_lock_timeout: str = "5s"
    # How long a missing Secret or ConfigMap counts as "not there yet" before Stalled.
    missing_input_seconds: int = 300


@dataclass(frozen=True)
class Workload:
    kind: str
    name: str


@dataclass(frozen=True)
class Spec:
    tool: Tool
    engine: Engine
    # Exactly one of url_secret (one key with the whole URL) and connection (split keys).
    url_secret: SecretKeyRef | None
    target: str = "head"
    image: str | None = None
    source_config_map: str | None = None
    command: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    working_dir: str | None = None
    env: tuple[Mapping[str, Any], ...] = ()
    env_from: tuple[Mapping[str, Any], ...] = ()
    service_account_name: str | None = None
    resources: Mapping[str, Any] = field(default_factory=dict)
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Mapping[str, Any], ...] = ()
    image_pull_secrets: tuple[str, ...] = ()
    when: When = "BeforeRollout"
    workloads: tuple[Workload, ...] = ()
    downgrade_allowed: bool = False
    approval: Approval = "None"
    retry: Retry = Retry()
    timeouts: Timeouts = Timeouts()
    shadow_secret: SecretKeyRef | None = None
    drift_interval_seconds: int | None = None
    suspend: bool = False
    connection: db_connection.Connection | None = None
    tls: db_connection.Tls | None = None
    pod_template: PodTemplate = field(default_factory=PodTemplate)
    volume_mounts: tuple[Mapping[str, Any], ...] = ()
    security_context: Mapping[str, Any] = field(default_factory=dict)
    version_table: VersionTable = field(default_factory=VersionTable)
    baseline_version: str | None = None  # spec.baseline.version (tool sql)
    # "namespace/name" of the DatabaseMigration: whose history tool sql keeps (never in the hash)
    owner: str = ""

    @property
    def uses_built_in_runner(self) -> bool:
        """SQL files and Alembic scripts from a ConfigMap run in Lockstep's own image."""
        return self.source_config_map is not None and self.tool in BUILT_IN_SOURCE_TOOLS


def parse_spec(raw: Mapping[str, Any], owner: str = "") -> Spec:
    """Parse `spec` of a DatabaseMigration; raise SpecError naming the field that is wrong.

    ``owner`` ("namespace/name") names the resource, whose own history tool sql keeps.
    """
    tool = _choice(raw, "tool", TOOLS, default=None)
    database = _mapping(raw, "database")
    engine = _choice(database, "engine", ENGINES, default=None, path="database.engine")
    source = _mapping(raw, "source", required=False)
    config_map = _mapping(source, "configMapRef", required=False, path="source.configMapRef")
    source_name = _optional_str(config_map, "name")
    image = _optional_str(raw, "image")
    if source_name is not None and tool not in BUILT_IN_SOURCE_TOOLS:
        raise SpecError("source", f"a ConfigMap source works with tool sql or alembic, not {tool}")
    if image is None and source_name is None:
        raise SpecError(
            "image",
            "required: set spec.image to the image that holds your migrations "
            "(or use tool sql/alembic with spec.source.configMapRef)",
        )
    target = str(raw.get("target", "head")).strip()
    if not target:
        raise SpecError("target", "must not be empty; use 'head' for the newest revision")
    verify = _mapping(raw, "verify", required=False)
    shadow = _mapping(verify, "shadowDatabase", required=False, path="verify.shadowDatabase")
    drift = _mapping(raw, "driftCheck", required=False)
    rollout = _mapping(raw, "rollout", required=False)
    when = cast(When, _choice(raw, "when", ("BeforeRollout", "AfterRollout"), "BeforeRollout"))
    workloads = tuple(
        Workload(kind=str(w.get("kind", "Deployment")), name=str(w["name"]))
        for w in _list(rollout, "workloads")
    )
    if when == "AfterRollout" and not workloads:
        raise SpecError("rollout.workloads", "when: AfterRollout needs at least one workload")
    url_secret, connection, tls = _credentials(database)
    template, mounts = _pod_template(raw)
    version_table, baseline_version = _history(raw, str(tool))
    return Spec(
        tool=cast(Tool, tool),
        engine=cast(Engine, engine),
        url_secret=url_secret,
        connection=connection,
        tls=tls,
        pod_template=template,
        volume_mounts=mounts,
        security_context=dict(_mapping(raw, "securityContext", required=False)),
        target=target,
        image=image,
        source_config_map=source_name,
        command=tuple(str(c) for c in _list(raw, "command")),
        args=tuple(str(a) for a in _list(raw, "args")),
        working_dir=_optional_str(raw, "workingDir"),
        env=tuple(_list(raw, "env")),
        env_from=tuple(_list(raw, "envFrom")),
        service_account_name=_optional_str(raw, "serviceAccountName"),
        resources=dict(_mapping(raw, "resources", required=False)),
        node_selector={str(k): str(v) for k, v in _mapping(raw, "nodeSelector", False).items()},
        tolerations=tuple(_list(raw, "tolerations")),
        image_pull_secrets=tuple(str(s["name"]) for s in _list(raw, "imagePullSecrets")),
        when=when,
        workloads=workloads,
        downgrade_allowed=_choice(raw, "downgrade", ("Forbid", "Allow"), "Forbid") == "Allow",
        approval=cast(
            Approval, _choice(raw, "approval", ("None", "Destructive", "Always"), "None")
        ),
        retry=_retry(_mapping(raw, "retry", required=False)),
        timeouts=_timeouts(_mapping(raw, "timeouts", required=False)),
        shadow_secret=(
            _secret_ref(shadow, "verify.shadowDatabase.urlSecretRef") if shadow else None
        ),
        drift_interval_seconds=_optional_int(drift, "intervalSeconds"),
        suspend=bool(raw.get("suspend", False)),
        version_table=version_table,
        baseline_version=baseline_version,
        owner=owner,
    )


def spec_hash(raw_spec: Mapping[str, Any], inputs: Mapping[str, str] | None = None) -> str:
    """Hash of everything that decides what a migration Job does.

    `inputs` carries content that lives outside the spec but changes the run, such as the digest
    of the ConfigMap with the SQL files: editing a file must start a new run, like a new image.
    """
    relevant = {k: raw_spec[k] for k in RUN_FIELDS if k in raw_spec}
    canonical = json.dumps(
        {"spec": relevant, "inputs": dict(inputs or {})}, sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def content_digest(data: Mapping[str, str]) -> str:
    """Stable digest of a ConfigMap's data (file name → content)."""
    canonical = json.dumps(dict(data), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _retry(raw: Mapping[str, Any]) -> Retry:
    retry = Retry(
        limit=_int(raw, "limit", Retry.limit, "retry.limit", 0, 100),
        backoff_seconds=_int(raw, "backoffSeconds", Retry.backoff_seconds, "retry", 1, 86400),
        max_backoff_seconds=_int(
            raw, "maxBackoffSeconds", Retry.max_backoff_seconds, "retry", 1, 604800
        ),
    )
    if retry.max_backoff_seconds < retry.backoff_seconds:
        raise SpecError("retry.maxBackoffSeconds", "must be at least retry.backoffSeconds")
    return retry


def _timeouts(raw: Mapping[str, Any]) -> Timeouts:
    statement = raw.get("statementLockTimeout", Timeouts.statement_lock_timeout)
    if not isinstance(statement, str) or not re.match(STATEMENT_LOCK_TIMEOUT_PATTERN, statement):
        raise SpecError(
            "timeouts.statementLockTimeout",
            f"{statement!r} is not a duration such as 500ms, 5s or 2min (a whole number above 0)",
        )
    return Timeouts(
        job_seconds=_int(raw, "jobSeconds", Timeouts.job_seconds, "timeouts.jobSeconds", 1, None),
        lock_wait_seconds=_int(
            raw, "lockWaitSeconds", Timeouts.lock_wait_seconds, "timeouts.lockWaitSeconds", 0, None
        ),
        statement_lock_timeout=statement,
        missing_input_seconds=_int(
            raw,
            "missingInputSeconds",
            Timeouts.missing_input_seconds,
            "timeouts.missingInputSeconds",
            0,
            None,
        ),
    )


def _credentials(
    database: Mapping[str, Any],
) -> tuple[SecretKeyRef | None, db_connection.Connection | None, db_connection.Tls | None]:
    """spec.database: exactly one of urlSecretRef and connection, and optional tls."""
    if ("urlSecretRef" in database) == ("connection" in database):
        raise SpecError(
            "database",
            "needs exactly one of urlSecretRef (a Secret key with the whole URL) or connection "
            "(host, port, database, username, password from Secret keys)",
        )
    try:
        connection = (
            db_connection.parse_connection(_mapping(database, "connection"))
            if "connection" in database
            else None
        )
        raw_tls = _mapping(database, "tls", required=False)
        tls = db_connection.parse_tls(raw_tls) if raw_tls else None
    except db_connection.ConnectionSpecError as error:
        raise SpecError(f"database.{error.field}", str(error)) from None
    url_secret = None if connection else _secret_ref(database, "database.urlSecretRef")
    if connection is not None and database.get("engine") == "sqlite":
        raise SpecError("database.connection", "sqlite takes a URL (urlSecretRef), not a host")
    return url_secret, connection, tls


def _pod_template(
    raw: Mapping[str, Any],
) -> tuple[pod_template.PodTemplate, tuple[Mapping[str, Any], ...]]:
    try:
        template = pod_template.parse_pod_template(_mapping(raw, "podTemplate", required=False))
        return template, pod_template.parse_volume_mounts(_list(raw, "volumeMounts"), template)
    except pod_template.TemplateError as error:
        raise SpecError(error.field, str(error)) from None


def _history(raw: Mapping[str, Any], tool: str) -> tuple[VersionTable, str | None]:
    try:
        return (
            spec_history.parse_version_table(_mapping(raw, "versionTable", required=False), tool),
            spec_history.parse_baseline(_mapping(raw, "baseline", required=False), tool),
        )
    except spec_history.HistorySpecError as error:
        raise SpecError(error.field, str(error)) from None


def _secret_ref(parent: Mapping[str, Any], path: str) -> SecretKeyRef:
    ref = _mapping(parent, "urlSecretRef", path=path)
    name, key = ref.get("name"), ref.get("key")
    if not name or not key:
        raise SpecError(path, "needs both name and key of a Secret in the same namespace")
    return SecretKeyRef(name=str(name), key=str(key))


def _mapping(
    raw: Mapping[str, Any], key: str, required: bool = True, path: str | None = None
) -> Mapping[str, Any]:
    value = raw.get(key)
    if value is None:
        if required:
            raise SpecError(path or key, "is required")
        return {}
    if not isinstance(value, Mapping):
        raise SpecError(path or key, f"must be an object, got {type(value).__name__}")
    return value


def _list(raw: Mapping[str, Any], key: str) -> Sequence[Any]:
    value = raw.get(key) or []
    if not isinstance(value, list):
        raise SpecError(key, f"must be a list, got {type(value).__name__}")
    return value


def _choice(
    raw: Mapping[str, Any],
    key: str,
    choices: Sequence[str],
    default: str | None,
    path: str | None = None,
) -> str:
    value = raw.get(key, default)
    if value is None:
        raise SpecError(path or key, f"is required; one of {', '.join(choices)}")
    if value not in choices:
        raise SpecError(path or key, f"{value!r} is not one of {', '.join(choices)}")
    return str(value)


def _optional_str(raw: Mapping[str, Any], key: str) -> str | None:
    value = raw.get(key)
    return str(value) if value not in (None, "") else None


def _optional_int(raw: Mapping[str, Any], key: str) -> int | None:
    value = raw.get(key)
    return int(value) if value is not None else None


def _int(
    raw: Mapping[str, Any], key: str, default: int, path: str, low: int, high: int | None
) -> int:
    value = raw.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise SpecError(path, f"{key} must be a whole number, got {value!r}")
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise SpecError(path, f"{key} must be {bound}, got {value}")
    return value
