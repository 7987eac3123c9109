"""The migration Job builder: names, labels, safety settings, commands."""

from __future__ import annotations

from typing import Any

import pytest

from lockstep.jobs import containers, job_spec, naming
from lockstep.model import parse_spec

OWNER = naming.Owner(name="shop", namespace="shop", uid="1234-5678")
HASH = "a1b2c3d4e5f6" + "0" * 52
SQL_SPEC = {
    "tool": "sql",
    "source": {"configMapRef": {"name": "shop-migrations"}},
    "database": {"engine": "postgresql", "urlSecretRef": {"name": "shop-db", "key": "url"}},
    "timeouts": {"jobSeconds": 900, "lockWaitSeconds": 120, "statementLockTimeout": "3s"},
}


def build(spec: dict[str, Any] | None = None, attempt: int = 0, **request: Any) -> dict[str, Any]:
    return job_spec.build_job(
        OWNER,
        parse_spec(spec or SQL_SPEC),
        HASH,
        naming.JobRequest(attempt=attempt, target=request.get("target", "head")),
        "dbkey123",
        "ghcr.io/lockstep-dev/lockstep:0.1.0",
    )


def pod(job: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = job["spec"]["template"]["spec"]
    return result


@pytest.mark.parametrize(
    ("attempt", "name"), [(0, "shop-a1b2c3d4"), (1, "shop-a1b2c3d4-r1"), (12, "shop-a1b2c3d4-r12")]
)
def test_job_name_is_deterministic_per_spec_and_attempt(attempt: int, name: str) -> None:
    assert build(attempt=attempt)["metadata"]["name"] == name


def test_longest_allowed_name_fits_the_63_character_limit() -> None:
    assert len(naming.job_name("x" * 48, HASH, 100)) <= 63


def test_job_runs_once_and_lockstep_owns_retries() -> None:
    spec = build()["spec"]
    assert spec["backoffLimit"] == 0
    assert spec["parallelism"] == 1
    assert spec["completions"] == 1
    assert spec["activeDeadlineSeconds"] == 900
    assert pod(build())["restartPolicy"] == "Never"


def test_owner_reference_points_at_the_migration() -> None:
    (owner,) = build()["metadata"]["ownerReferences"]
    assert owner == {
        "apiVersion": "lockstep.dev/v1alpha1",
        "kind": "DatabaseMigration",
        "name": "shop",
        "uid": "1234-5678",
        "controller": True,
        "blockOwnerDeletion": True,
    }


def test_labels_identify_migration_database_and_spec() -> None:
    labels = build(attempt=2)["metadata"]["labels"]
    assert labels["lockstep.dev/migration"] == "shop"
    assert labels["lockstep.dev/database"] == "dbkey123"
    assert labels["lockstep.dev/spec-hash"] == "a1b2c3d4"
    assert labels["lockstep.dev/attempt"] == "2"
    assert labels["app.kubernetes.io/managed-by"] == "lockstep"
    assert build()["spec"]["template"]["metadata"]["labels"]["lockstep.dev/database"] == "dbkey123"


def test_pod_meets_the_restricted_pod_security_standard() -> None:
    spec = pod(build())
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in spec["containers"]:
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["readOnlyRootFilesystem"] is True
        assert context["capabilities"] == {"drop": ["ALL"]}
    assert {"name": "tmp", "mountPath": "/tmp"} in spec["containers"][0]["volumeMounts"]


def test_database_url_comes_from_the_secret_never_the_spec() -> None:
    (container,) = pod(build())["containers"]
    assert container["env"][0] == {
        "name": "DATABASE_URL",
        "valueFrom": {"secretKeyRef": {"name": "shop-db", "key": "url"}},
    }
    assert "postgres" not in str(container["command"])


def test_built_in_runner_mounts_the_config_map_and_runs_lockstep() -> None:
    spec = pod(build(target="2"))
    (container,) = spec["containers"]
    assert container["image"] == "ghcr.io/lockstep-dev/lockstep:0.1.0"
    assert container["command"][:2] == ["lockstep", "run"]
    assert container["command"][container["command"].index("--target") + 1] == "2"
    assert container["command"][container["command"].index("--lock-wait-seconds") + 1] == "120"
    assert "--allow-downgrade" not in container["command"]
    assert {"name": "migrations", "configMap": {"name": "shop-migrations"}} in spec["volumes"]
    assert spec["automountServiceAccountToken"] is False


def test_downgrade_allowed_is_passed_to_the_runner() -> None:
    (container,) = pod(build({**SQL_SPEC, "downgrade": "Allow"}))["containers"]
    assert "--allow-downgrade" in container["command"]


def test_user_command_env_and_scheduling_fields_are_passed_through() -> None:
    spec = {
        "tool": "flyway",
        "image": "acme/shop-migrations:1.2",
        "command": ["flyway", "migrate"],
        "args": ["-X"],
        "workingDir": "/flyway",
        "env": [{"name": "FLYWAY_LOCATIONS", "value": "filesystem:/sql"}],
        "serviceAccountName": "migrator",
        "nodeSelector": {"pool": "db"},
        "tolerations": [{"key": "db", "operator": "Exists"}],
        "imagePullSecrets": [{"name": "regcred"}],
        "resources": {"limits": {"memory": "512Mi"}},
        "database": {"engine": "mysql", "urlSecretRef": {"name": "db", "key": "url"}},
    }
    result = pod(build(spec))
    (container,) = result["containers"]
    assert container["image"] == "acme/shop-migrations:1.2"
    assert container["command"] == ["flyway", "migrate"]
    assert container["args"] == ["-X"]
    assert container["workingDir"] == "/flyway"
    assert {"name": "FLYWAY_LOCATIONS", "value": "filesystem:/sql"} in container["env"]
    assert container["resources"] == {"limits": {"memory": "512Mi"}}
    assert result["serviceAccountName"] == "migrator"
    assert result["automountServiceAccountToken"] is True
    assert result["nodeSelector"] == {"pool": "db"}
    assert result["imagePullSecrets"] == [{"name": "regcred"}]
    assert "runAsUser" not in result["securityContext"]  # user images keep their own USER


FLYWAY_SPEC = {
    "tool": "flyway",
    "image": "acme/flyway-migrations:2",
    "database": {"engine": "postgresql", "urlSecretRef": {"name": "db", "key": "url"}},
}


def test_flyway_gets_its_url_converted_in_an_init_container_on_a_memory_volume() -> None:
    spec = pod(build(FLYWAY_SPEC))
    init, lock = spec["initContainers"]
    assert lock["name"] == "lockstep-lock"  # the URL is converted before the lock is taken
    assert init["name"] == "lockstep-env"
    assert init["image"] == "ghcr.io/lockstep-dev/lockstep:0.1.0"
    assert init["command"] == ["lockstep", "dburl", "--format", "flyway", "--out", "/lockstep/env"]
    assert init["env"][0]["valueFrom"]["secretKeyRef"] == {"name": "db", "key": "url"}
    assert init["securityContext"]["runAsUser"] == 65532
    assert {"name": "lockstep-env", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}} in spec[
        "volumes"
    ]
    (migrate,) = spec["containers"]
    assert {"name": "lockstep-env", "mountPath": "/lockstep", "readOnly": True} in migrate[
        "volumeMounts"
    ]
    assert migrate["command"][:2] == ["sh", "-c"]
    assert spec["securityContext"]["fsGroup"] == 65532  # the image's user can read the file


def test_tools_that_take_a_url_need_no_conversion() -> None:
    spec = {**FLYWAY_SPEC, "tool": "knex"}
    assert [c["name"] for c in pod(build(spec))["initContainers"]] == ["lockstep-lock"]


def test_every_job_holds_the_database_lock_in_a_native_sidecar() -> None:
    spec = pod(build())
    (lock,) = spec["initContainers"]
    assert lock["name"] == "lockstep-lock"
    assert lock["restartPolicy"] == "Always"  # a native sidecar: runs beside the migration
    assert lock["image"] == "ghcr.io/lockstep-dev/lockstep:0.1.0"
    assert lock["command"][:4] == ["lockstep", "lock", "--wait-seconds", "120"]
    probe = lock["startupProbe"]
    assert probe["exec"]["command"][:3] == ["lockstep", "lock", "--probe"]
    # The probe must not give up before the lock wait does.
    assert probe["failureThreshold"] * probe["periodSeconds"] > 120
    assert lock["env"][0]["valueFrom"]["secretKeyRef"] == {"name": "shop-db", "key": "url"}
    assert lock["securityContext"]["readOnlyRootFilesystem"] is True
    (migrate,) = spec["containers"]
    assert "--no-lock" in migrate["command"]  # the runner must not wait on its own sidecar


def test_a_downgrade_runs_the_newer_image_and_is_labelled() -> None:
    spec = parse_spec({**FLYWAY_SPEC, "tool": "knex", "image": "shop:1.4"})
    job = job_spec.build_job(
        OWNER,
        spec,
        HASH,
        naming.JobRequest(attempt=0, target="20240101_a.js", downgrade=True, image="shop:1.5"),
        "dbkey",
        "runner",
    )
    (container,) = pod(job)["containers"]
    assert container["image"] == "shop:1.5"
    assert job["metadata"]["labels"]["lockstep.dev/direction"] == "down"
    assert "migrate:down" in " ".join(container["command"])


def test_command_problem_reports_what_the_tool_cannot_do() -> None:
    spec = parse_spec(FLYWAY_SPEC)
    problem = containers.command_problem(spec, naming.JobRequest(0, "1", downgrade=True))
    assert problem is not None and problem.reason == "DowngradeUnsupported"
    assert containers.command_problem(spec, naming.JobRequest(0, "head")) is None


def test_external_tools_on_mysql_get_the_run_mark_statement_instead_of_pgappname() -> None:
    """MySQL/MariaDB drivers send no tag: a tool's connection hook runs the statement that takes
    the run's mark (docs/guarantees.md); a user's own value is replaced."""
    spec = {
        "tool": "sequelize",
        "image": "acme/shop-migrations:1.2",
        "env": [{"name": "LOCKSTEP_RUN_MARK_SQL", "value": "SELECT 1"}],
        "database": {"engine": "mariadb", "urlSecretRef": {"name": "db", "key": "url"}},
    }
    (container,) = pod(build(spec))["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["LOCKSTEP_RUN_MARK_SQL"].startswith("SELECT GET_LOCK(")
    assert [e["name"] for e in container["env"]].count("LOCKSTEP_RUN_MARK_SQL") == 1
    assert "PGAPPNAME" not in env


def test_external_tools_tag_their_connections_for_the_fence_and_the_runner_does_not() -> None:
    """PGAPPNAME makes libpq, psycopg and node-postgres connections findable by a later run's
    fence (docs/adr/0009-the-fence.md); a user's own PGAPPNAME is replaced, the tag is needed."""
    tag = {"name": "PGAPPNAME", "value": "lockstep-migration"}
    spec = {
        "tool": "knex",
        "image": "acme/shop-migrations:1.2",
        "env": [{"name": "PGAPPNAME", "value": "shop"}, {"name": "A", "value": "b"}],
        "database": {"engine": "postgresql", "urlSecretRef": {"name": "db", "key": "url"}},
    }
    (container,) = pod(build(spec))["containers"]
    named = [e for e in container["env"] if e["name"] == "PGAPPNAME"]
    assert named == [tag]
    assert {"name": "A", "value": "b"} in container["env"]
    (runner,) = pod(build())["containers"]
    assert tag not in runner["env"]  # the built-in runner tags its migration connection itself
