"""spec.database.tls on the real control plane: the test PostgreSQL server is switched to TLS with
a certificate for 127.0.0.1 signed by a throwaway CA; a migration whose TLS Secret holds that CA
verifies the server (sslmode=verify-full) and succeeds, one with another CA fails to connect.
Both the pods (lock sidecar, runner) and the operator's own reads use the files.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from testbed import kubetest
from testbed.operatorprocess import OperatorProcess

pytestmark = pytest.mark.e2e


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _make_ca(directory: Path, name: str) -> None:
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        "-subj", f"/CN={name}", "-keyout", f"{name}.key", "-out", f"{name}.crt",
        cwd=directory,
    )  # fmt: skip


@pytest.fixture
def tls_server(postgres_admin_url: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    """The test server with TLS on for the duration of the test (restored afterwards); yields
    the PEM of the CA that signed its certificate and of an unrelated CA."""
    with psycopg.connect(postgres_admin_url, autocommit=True) as admin:
        data_dir = Path(str(admin.execute("SHOW data_directory").fetchone()[0]))  # type: ignore[index]
    owner = data_dir.stat().st_uid
    if os.geteuid() not in (0, owner):
        pytest.skip("the server's key must belong to the server's user: run as root or as it")
    _make_ca(tmp_path, "test-ca")
    _make_ca(tmp_path, "other-ca")
    (tmp_path / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
        "-keyout", "server.key", "-out", "server.csr", cwd=tmp_path,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "test-ca.crt", "-CAkey", "test-ca.key",
        "-CAcreateserial", "-days", "1", "-extfile", "san.cnf", "-out", "server.crt",
        cwd=tmp_path,
    )  # fmt: skip
    # Inside the data directory: the server's user may not traverse pytest's private tmp_path.
    server_dir = data_dir / "lockstep-e2e-tls"
    server_dir.mkdir(exist_ok=True)
    for name in ("server.key", "server.crt"):
        shutil.copy(tmp_path / name, server_dir / name)
        os.chown(server_dir / name, owner, -1)
    (server_dir / "server.key").chmod(0o600)
    settings = {
        "ssl_cert_file": server_dir / "server.crt",
        "ssl_key_file": server_dir / "server.key",
    }
    with psycopg.connect(postgres_admin_url, autocommit=True) as admin:
        for key, path in settings.items():
            admin.execute(f"ALTER SYSTEM SET {key} = '{path}'")
        admin.execute("ALTER SYSTEM SET ssl = on")
        admin.execute("SELECT pg_reload_conf()")
    try:
        _wait_for_tls(postgres_admin_url)
        yield {
            "ca": (tmp_path / "test-ca.crt").read_text(),
            "other": (tmp_path / "other-ca.crt").read_text(),
        }
    finally:
        with psycopg.connect(postgres_admin_url, autocommit=True) as admin:
            for key in ("ssl", *settings):
                admin.execute(f"ALTER SYSTEM RESET {key}")
            admin.execute("SELECT pg_reload_conf()")
        shutil.rmtree(server_dir, ignore_errors=True)


def _wait_for_tls(url: str) -> None:
    """pg_reload_conf() only signals the server: wait until it answers with TLS."""
    deadline = time.monotonic() + 10
    while True:
        try:
            with psycopg.connect(url, sslmode="require") as probe:
                assert probe.info.pgconn.ssl_in_use
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _migration(name: str, ca_secret: str) -> dict[str, object]:
    timeouts = {"lockWaitSeconds": 60, "jobSeconds": 120}
    body = kubetest.sql_migration(name, config_map="m", retry={"limit": 0}, timeouts=timeouts)
    body["spec"]["database"]["tls"] = {"secretName": ca_secret, "ca": "ca.crt"}  # type: ignore[index]
    return body


def test_the_server_is_verified_with_the_ca_from_the_tls_secret(
    k8s: client.ApiClient,
    namespace: str,
    operator: OperatorProcess,
    pg_url: str,
    tls_server: dict[str, str],
) -> None:
    kubetest.create_secret(k8s, namespace, "db", {"url": pg_url})
    kubetest.create_secret(k8s, namespace, "right-ca", {"ca.crt": tls_server["ca"]})
    kubetest.create_secret(k8s, namespace, "wrong-ca", {"ca.crt": tls_server["other"]})
    kubetest.create_config_map(k8s, namespace, "m", {"V1__t.sql": "CREATE TABLE tls_t (id int);"})

    kubetest.create_migration(k8s, namespace, _migration("verified", "right-ca"))
    body = kubetest.wait_for_condition(k8s, namespace, "verified", "Ready", reason="Succeeded")
    assert body["status"]["appliedRevision"] == "1"
    (job,) = kubetest.jobs_of(k8s, namespace, "verified")
    env = {e.name: e.value for e in job.spec.template.spec.containers[0].env if e.value}
    assert "sslmode=verify-full" in env["LOCKSTEP_DB_PARAMS"]
    with psycopg.connect(pg_url) as connection:
        assert connection.execute("SELECT count(*) FROM tls_t").fetchone() == (0,)

    kubetest.create_migration(k8s, namespace, _migration("unverified", "wrong-ca"))
    # The lock sidecar connects first: it says why, and retries until the Job's deadline.
    said = kubetest.wait_for(
        "the lock sidecar's TLS error",
        lambda: _lock_log_with(k8s, namespace, "unverified", "certificate verify failed"),
        timeout=90,
    )
    assert "(not shown)" not in said  # a driver error, not a URL problem
    assert (
        kubetest.condition(kubetest.get_migration(k8s, namespace, "unverified"), "Ready")["status"]
        != "True"
    )  # type: ignore[index]


def _lock_log_with(api: client.ApiClient, namespace: str, migration: str, text: str) -> str | None:
    core = client.CoreV1Api(api)
    pods = core.list_namespaced_pod(namespace, label_selector=f"lockstep.dev/migration={migration}")
    for pod in pods.items:
        try:
            log = core.read_namespaced_pod_log(
                pod.metadata.name, namespace, container="lockstep-lock"
            )
        except ApiException:
            continue
        if text in log:
            return str(log)
    return None
