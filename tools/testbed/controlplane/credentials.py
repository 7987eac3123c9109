"""Credentials of the local control plane: its CA, the API server's serving certificate, the
service-account key, static tokens and the kubeconfigs that use them (made with openssl)."""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
from pathlib import Path

from .state import ADMIN_USER, CONTROLLER_MANAGER_USER, ClusterError, Layout

# --- certificates and credentials ------------------------------------------


def openssl(*args: str) -> None:
    result = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ClusterError(f"openssl {args[0]} failed: {result.stderr.strip()}")


def serving_cert_extensions() -> str:
    names = [
        "IP:127.0.0.1",
        "IP:10.0.0.1",  # the first service IP: the `kubernetes` Service
        "IP:10.244.0.1",  # the real node's bridge, where pods reach the API server
        "DNS:localhost",
        "DNS:kubernetes",
        "DNS:kubernetes.default",
        "DNS:kubernetes.default.svc",
        "DNS:kubernetes.default.svc.cluster.local",
    ]
    return "\n".join(
        [
            "[serving]",
            "basicConstraints = critical, CA:FALSE",
            "keyUsage = critical, digitalSignature, keyEncipherment",
            "extendedKeyUsage = serverAuth",
            "subjectKeyIdentifier = hash",
            "authorityKeyIdentifier = keyid, issuer",
            f"subjectAltName = {', '.join(names)}",
            "",
        ]
    )


def generate_ca(layout: Layout) -> None:
    openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "3650",
        "-subj", "/CN=lockstep-testbed-ca",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
        "-keyout", str(layout.ca_key), "-out", str(layout.ca_cert),
    )  # fmt: skip


def generate_serving_cert(layout: Layout) -> None:
    csr = layout.pki / "apiserver.csr"
    extensions = layout.pki / "apiserver.ext"
    extensions.write_text(serving_cert_extensions())
    openssl(
        "req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=kube-apiserver",
        "-keyout", str(layout.serving_key), "-out", str(csr),
    )  # fmt: skip
    openssl(
        "x509", "-req", "-sha256", "-days", "3650", "-in", str(csr),
        "-CA", str(layout.ca_cert), "-CAkey", str(layout.ca_key), "-set_serial",
        str(secrets.randbits(63)), "-extfile", str(extensions), "-extensions", "serving",
        "-out", str(layout.serving_cert),
    )  # fmt: skip


def generate_service_account_key(layout: Layout) -> None:
    key, pub = layout.service_account_key, layout.service_account_pub
    openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(key))
    openssl("pkey", "-in", str(key), "-pubout", "-out", str(pub))


def write_token_file(layout: Layout, extra_users: dict[str, str] | None = None) -> dict[str, str]:
    """Write the static token file (users -> groups, plus ``extra_users``); return user -> token."""
    users = {ADMIN_USER: "system:masters", CONTROLLER_MANAGER_USER: "", **(extra_users or {})}
    tokens = {user: secrets.token_hex(24) for user in users}
    lines = [f'{tokens[user]},{user},{user},"{groups}"' for user, groups in users.items()]
    layout.token_file.write_text("\n".join(lines) + "\n")
    layout.token_file.chmod(0o600)
    return tokens


def kubeconfig_document(server: str, ca_cert: Path, user: str, token: str) -> str:
    ca_data = base64.b64encode(ca_cert.read_bytes()).decode()
    name = "lockstep-testbed"
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": name, "cluster": {"server": server, "certificate-authority-data": ca_data}}
        ],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": user}}],
        "current-context": name,
        "preferences": {},
    }
    return json.dumps(document, indent=2) + "\n"  # JSON is YAML


def write_kubeconfig(path: Path, server: str, ca_cert: Path, user: str, token: str) -> None:
    path.write_text(kubeconfig_document(server, ca_cert, user, token))
    path.chmod(0o600)
