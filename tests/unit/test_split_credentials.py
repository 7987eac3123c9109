"""spec.database.connection and spec.database.tls: parsed, composed into a URL (in the pod and in
the operator) that survives any password, and carried by the Jobs without any value in them."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from sqlalchemy.engine import make_url

from lockstep import constants, database, db_connection, kube, url_secrets
from lockstep.controller import credentials
from lockstep.jobs import containers, job_spec, naming
from lockstep.model import SpecError, parse_spec
from lockstep.pod import url_formats

HOSTILE = "p@ss:w/rd%41#frag?x=1&y 2"
CNPG = {
    "host": {"secretKeyRef": {"name": "shop-db-app", "key": "host"}},
    "port": {"secretKeyRef": {"name": "shop-db-app", "key": "port"}},
    "database": {"secretKeyRef": {"name": "shop-db-app", "key": "dbname"}},
    "username": {"secretKeyRef": {"name": "shop-db-app", "key": "user"}},
    "password": {"secretKeyRef": {"name": "shop-db-app", "key": "password"}},
}
SECRET = {"host": "shop-db-rw", "port": "5432", "dbname": "app", "user": "app", "password": HOSTILE}
OWNER = naming.Owner(name="shop", namespace="shop", uid="1234-5678")
HASH = "a1b2c3d4e5f6" + "0" * 52


def spec_of(tool: str = "sql", database: dict[str, Any] | None = None) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "tool": tool,
        "database": database or {"engine": "postgresql", "connection": CNPG},
    }
    if tool == "sql":
        raw["source"] = {"configMapRef": {"name": "m"}}
    else:
        raw["image"] = "ghcr.io/acme/shop:1"
    return raw


def pod_of(raw: dict[str, Any]) -> dict[str, Any]:
    job = job_spec.build_job(
        OWNER, parse_spec(raw), HASH, naming.JobRequest(0, "head"), "k", "lockstep:1"
    )
    result: dict[str, Any] = job["spec"]["template"]["spec"]
    return result


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


# --------------------------------------------------------------------------- composing


@pytest.mark.parametrize(
    "password", [HOSTILE, "plain", "%", "@@@", "a:b", "ä ö ü", "#", "/", "?", "&", "'\"", "\\"]
)
def test_composed_url_gives_the_driver_the_password_as_it_is(password: str) -> None:
    url = db_connection.compose_url("postgresql", "db", "app", "us@r", password, "6543")
    parsed = database.parse_url(url)
    assert (parsed.username, parsed.password) == ("us@r", password)
    assert (parsed.host, parsed.port, parsed.database) == ("db", 6543, "app")
    assert database.identity_from_url(url).database == "app"


def test_composed_url_keeps_ipv6_hosts_and_odd_database_names() -> None:
    url = db_connection.compose_url("mysql", "::1", "my db/x", "u", "p", "3306", {"ssl_ca": "/c"})
    parsed = make_url(url)
    assert parsed.host == "::1" and parsed.database == "my db/x"
    assert dict(parsed.query) == {"ssl_ca": "/c"}


def test_url_from_environ_composes_the_parts_the_job_sets() -> None:
    environ = {
        db_connection.ENGINE_ENV: "postgresql",
        db_connection.HOST_ENV: "shop-db-rw",
        db_connection.PORT_ENV: "5432",
        db_connection.NAME_ENV: "app",
        db_connection.USER_ENV: "app",
        db_connection.PASSWORD_ENV: HOSTILE,
        db_connection.PARAMS_ENV: "sslmode=require",
    }
    url = db_connection.url_from_environ(environ)
    assert url is not None
    parsed = make_url(url)
    assert parsed.password == HOSTILE and dict(parsed.query) == {"sslmode": "require"}
    # The driver sees the password whole; a message shows none of it.
    assert HOSTILE not in url_secrets.redact_url(url)
    assert quote(HOSTILE, safe="") not in url_secrets.scrub(f"failed for {url}", url)


def test_url_from_environ_prefers_database_url_and_adds_only_missing_parameters() -> None:
    environ = {
        "DATABASE_URL": "postgresql://u:p?w@h/db?sslmode=disable",
        db_connection.PARAMS_ENV: "sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem",
    }
    url = db_connection.url_from_environ(environ)
    assert url == "postgresql://u:p?w@h/db?sslmode=disable&sslrootcert=%2Fetc%2Fca.pem"
    assert db_connection.url_from_environ({}) is None


def test_a_partial_set_of_parts_is_named_without_values() -> None:
    with pytest.raises(db_connection.ConnectionSpecError) as raised:
        db_connection.url_from_environ(
            {db_connection.HOST_ENV: "h", db_connection.PASSWORD_ENV: HOSTILE}
        )
    assert "LOCKSTEP_DB_ENGINE" in str(raised.value) and HOSTILE not in str(raised.value)


@pytest.mark.parametrize(
    ("engine", "expected"),
    [
        (
            "postgresql",
            {
                "sslrootcert": "/etc/lockstep/tls/ca.pem",
                "sslcert": "/etc/lockstep/tls/cert.pem",
                "sslkey": "/etc/lockstep/tls/key.pem",
                "sslmode": "verify-full",
            },
        ),
        (
            "mariadb",
            {
                "ssl_ca": "/etc/lockstep/tls/ca.pem",
                "ssl_cert": "/etc/lockstep/tls/cert.pem",
                "ssl_key": "/etc/lockstep/tls/key.pem",
            },
        ),
    ],
)
def test_tls_files_become_the_driver_s_parameters(engine: str, expected: dict[str, str]) -> None:
    tls = db_connection.Tls("ca", ca="ca.crt", cert="tls.crt", key="tls.key")
    assert db_connection.tls_parameters(engine, tls) == expected


def test_spec_parameters_win_over_tls_defaults() -> None:
    connection = db_connection.parse_connection({**CNPG, "parameters": {"sslmode": "verify-ca"}})
    tls = db_connection.Tls("ca", ca="ca.crt")
    assert db_connection.parameters(connection, "postgresql", tls)["sslmode"] == "verify-ca"


# --------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("database", "field", "words"),
    [
        ({"engine": "postgresql"}, "database", "exactly one of urlSecretRef"),
        (
            {"engine": "postgresql", "urlSecretRef": {"name": "a", "key": "b"}, "connection": CNPG},
            "database",
            "exactly one of urlSecretRef",
        ),
        (
            {"engine": "postgresql", "connection": {**CNPG, "password": {"value": "x"}}},
            "database.connection.password",
            "secretKeyRef",
        ),
        (
            {"engine": "postgresql", "connection": {**CNPG, "parameters": {"PASSWORD": "x"}}},
            "database.connection.parameters.PASSWORD",
            "credential",
        ),
        (
            {"engine": "postgresql", "connection": {k: v for k, v in CNPG.items() if k != "host"}},
            "database.connection.host",
            "is required",
        ),
        (
            {
                "engine": "postgresql",
                "urlSecretRef": {"name": "a", "key": "b"},
                "tls": {"secretName": "t", "cert": "c"},
            },
            "database.tls",
            "needs its key",
        ),
    ],
)
def test_parse_spec_refuses_unusable_credentials(
    database: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises(SpecError) as raised:
        parse_spec(spec_of(database=database))
    assert raised.value.field == field
    assert words in str(raised.value)


# --------------------------------------------------------------------------- the Jobs


def test_built_in_runner_and_lock_sidecar_get_secret_references_only() -> None:
    pod = pod_of(spec_of())
    for container in [*pod["initContainers"], *pod["containers"]]:
        env = env_of(container)
        assert "DATABASE_URL" not in env
        assert env[db_connection.ENGINE_ENV] == "postgresql"
        assert env[db_connection.PASSWORD_ENV] == {
            "secretKeyRef": {"name": "shop-db-app", "key": "password"}
        }
        assert env[db_connection.NAME_ENV] == {
            "secretKeyRef": {"name": "shop-db-app", "key": "dbname"}
        }


def test_a_tool_in_its_image_sources_the_url_from_the_env_file() -> None:
    pod = pod_of(spec_of("knex"))
    env_init = pod["initContainers"][0]
    assert env_init["name"] == containers.ENV_CONTAINER
    assert env_init["command"][-4:] == ["--format", "url", "--out", containers.ENV_FILE]
    migrate = pod["containers"][0]
    assert migrate["command"][:4] == ["sh", "-c", '. /lockstep/env && exec "$@"', "sh"]
    assert migrate["command"][4:] == ["knex", "migrate:latest"]
    env = env_of(migrate)
    assert not {"DATABASE_URL", db_connection.PASSWORD_ENV} & set(env)
    assert pod["securityContext"]["fsGroup"] == containers.RUNNER_USER_ID


def test_flyway_keeps_its_own_format_and_composes_from_the_parts() -> None:
    pod = pod_of(spec_of("flyway"))
    env_init = pod["initContainers"][0]
    assert "--format" in env_init["command"] and "flyway" in env_init["command"]
    assert db_connection.PASSWORD_ENV in env_of(env_init)
    assert pod["containers"][0]["command"][0] == "sh"  # the adapter's own sourcing script


def test_a_url_secret_for_a_tool_in_its_image_is_unchanged() -> None:
    raw = spec_of("knex", {"engine": "postgresql", "urlSecretRef": {"name": "db", "key": "url"}})
    pod = pod_of(raw)
    assert [c["name"] for c in pod["initContainers"]] == [constants.LOCK_CONTAINER]
    assert pod["containers"][0]["command"] == ["knex", "migrate:latest"]


def test_tls_secret_is_mounted_where_every_connecting_container_reads_it() -> None:
    raw = spec_of(
        "knex",
        {
            "engine": "postgresql",
            "urlSecretRef": {"name": "db", "key": "url"},
            "tls": {"secretName": "pg-ca", "ca": "ca.crt", "cert": "tls.crt", "key": "tls.key"},
        },
    )
    pod = pod_of(raw)
    (volume,) = [v for v in pod["volumes"] if v["name"] == db_connection.TLS_VOLUME]
    assert volume["secret"] == {
        "secretName": "pg-ca",
        "items": [
            {"key": "ca.crt", "path": "ca.pem"},
            {"key": "tls.crt", "path": "cert.pem"},
            {"key": "tls.key", "path": "key.pem"},
        ],
        "defaultMode": 0o440,
    }
    for container in [*pod["initContainers"], *pod["containers"]]:
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        assert mounts[db_connection.TLS_DIR]["readOnly"] is True, container["name"]
    params = env_of(pod["initContainers"][0])[db_connection.PARAMS_ENV]
    assert "sslrootcert=%2Fetc%2Flockstep%2Ftls%2Fca.pem" in params
    assert pod["securityContext"]["fsGroup"] == containers.RUNNER_USER_ID  # group-readable key


def test_dburl_url_format_writes_database_url() -> None:
    url = db_connection.compose_url("postgresql", "h", "db", "u", HOSTILE)
    rendered = url_formats.render_env_file(url_formats.env_for("url", url))
    assert rendered.startswith("export DATABASE_URL=")


# --------------------------------------------------------------------------- the operator


class FakeApi:
    def __init__(self, secrets: dict[str, dict[str, str]]) -> None:
        self.secrets = secrets

    def read_secret_value(self, namespace: str, name: str, key: str) -> str:
        try:
            return self.secrets[name][key]
        except KeyError:
            raise kube.NotFoundError(f"key {key!r} in Secret {namespace}/{name}") from None


def test_operator_composes_the_same_url_as_the_pod() -> None:
    spec = parse_spec(spec_of())
    url = asyncio.run(credentials.read_url(FakeApi({"shop-db-app": SECRET}), "shop", spec))  # type: ignore[arg-type]
    parsed = make_url(url)
    assert (parsed.host, parsed.port, parsed.database) == ("shop-db-rw", 5432, "app")
    assert parsed.password == HOSTILE


def test_operator_names_the_field_of_a_missing_key() -> None:
    spec = parse_spec(spec_of())
    partial = {k: v for k, v in SECRET.items() if k != "password"}
    with pytest.raises(credentials.MissingKey) as raised:
        asyncio.run(credentials.read_url(FakeApi({"shop-db-app": partial}), "shop", spec))  # type: ignore[arg-type]
    assert raised.value.field == "spec.database.connection.password"


def test_operator_writes_tls_files_privately(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    database_spec = {
        "engine": "postgresql",
        "connection": CNPG,
        "tls": {"secretName": "pg-ca", "ca": "ca.crt"},
    }
    spec = parse_spec(spec_of(database=database_spec))
    api = FakeApi({"shop-db-app": SECRET, "pg-ca": {"ca.crt": "-----BEGIN CERTIFICATE-----"}})
    url = asyncio.run(credentials.read_url(api, "shop", spec))  # type: ignore[arg-type]
    query = dict(make_url(url).query)
    assert query["sslmode"] == "verify-full"
    ca = Path(str(query["sslrootcert"]))
    assert ca.read_text() == "-----BEGIN CERTIFICATE-----"
    assert stat.S_IMODE(ca.stat().st_mode) == 0o600
    assert stat.S_IMODE(ca.parent.parent.stat().st_mode) == 0o700
    assert ca.is_relative_to(tmp_path) and os.getuid() == ca.stat().st_uid


def test_a_plan_renders_with_the_composed_url_of_a_tool_in_its_image() -> None:
    raw = spec_of("alembic")
    job = job_spec.build_job(
        OWNER,
        parse_spec(raw),
        HASH,
        naming.JobRequest(0, "head", phase=constants.PHASE_PLAN, plan_salt="s" * 16),
        "k",
        "lockstep:1",
    )
    pod = job["spec"]["template"]["spec"]
    env_init, render = pod["initContainers"]
    assert env_init["name"] == containers.ENV_CONTAINER
    assert "url" in env_init["command"]
    assert render["command"][2].startswith(". /lockstep/env && { ")
    mounts = {m["mountPath"] for m in render["volumeMounts"]}
    assert containers.ENV_DIR in mounts
    assert containers.ENV_VOLUME in {v["name"] for v in pod["volumes"]}
    classify = pod["containers"][0]
    assert env_of(classify)[db_connection.PASSWORD_ENV] == CNPG["password"]
