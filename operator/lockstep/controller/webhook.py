"""The gate's mutating admission webhook, served over TLS by every replica (leader or standby).

Standbys do not run Kopf, so the webhook reads the DatabaseMigration from the API server itself:
one GET per labelled pod creation. When it cannot tell (API unreachable) it gates the pod: a
gated pod waits, an ungated pod might start against a schema that is not there.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import logging
import socket
import ssl
import tempfile
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from lockstep import gate, kube
from lockstep.controller import certs, metrics

log = logging.getLogger("lockstep.webhook")

PATH = "/mutate-pods"


@dataclass(frozen=True)
class WebhookOptions:
    port: int = 9443
    host: str = "0.0.0.0"  # noqa: S104 - the API server calls in from outside the pod
    namespace: str = "lockstep-system"
    tls_secret: str = "lockstep-webhook-tls"  # noqa: S105 - a Secret's name, not a password
    service: str = "lockstep-webhook"
    configuration: str = "lockstep-gate"
    # Development and tests: the operator runs outside the cluster and registers this URL itself.
    url: str | None = None


def tls_material(options: WebhookOptions) -> certs.ServingCertificate:
    """The serving certificate from the Secret; generated (or renewed) by a replica if needed.

    A certificate that does not cover the Service names (or 127.0.0.1 in URL mode), or expires
    within 30 days, is replaced; the caBundle follows in `register`.
    """
    names = [*certs.service_names(options.service, options.namespace), "localhost"]
    ips = ["127.0.0.1"] if options.url else []
    now = dt.datetime.now(dt.UTC)
    data = kube.read_secret_data(options.namespace, options.tls_secret)
    if data is not None and certs.usable(data.get("tls.crt", b""), names, ips, now):
        return certs.ServingCertificate(
            ca_pem=data.get("ca.crt", b""), cert_pem=data["tls.crt"], key_pem=data["tls.key"]
        )
    generated = certs.generate(names, ips, now)
    files = {
        "tls.crt": generated.cert_pem,
        "tls.key": generated.key_pem,
        "ca.crt": generated.ca_pem,
    }
    try:
        kube.write_tls_secret(
            options.namespace, options.tls_secret, files, replace=data is not None
        )
    except kube.ConflictError:
        # Another replica wrote one at the same moment: use theirs, so all replicas agree.
        stored = kube.read_secret_data(options.namespace, options.tls_secret) or {}
        return certs.ServingCertificate(
            ca_pem=stored.get("ca.crt", b""), cert_pem=stored["tls.crt"], key_pem=stored["tls.key"]
        )
    log.info("wrote a new webhook certificate to Secret %s", options.tls_secret)
    return generated


REGISTER_RETRY_SECONDS = 5.0
REGISTER_REFRESH_SECONDS = 60.0


def register(
    options: WebhookOptions, material: certs.ServingCertificate, *, refresh: bool = False
) -> bool:
    """Make the API server trust (and, in URL mode, find) this webhook; False if it cannot yet."""
    if options.url:
        live = kube.read_mutating_webhook(options.configuration)
        url = _url_to_register(options, live) if refresh else _own_url(options)
        kube.apply_mutating_webhook(configuration_for_url(options, material.ca_pem, url), live)
        return True
    if kube.inject_webhook_ca(options.configuration, material.ca_pem):
        return True
    log.warning(
        "MutatingWebhookConfiguration %s not found yet: pods labelled %s cannot be admitted "
        "until it exists (the Helm chart creates it)",
        options.configuration,
        gate.WAIT_FOR_LABEL,
    )
    return False


def _own_url(options: WebhookOptions) -> str:
    return f"{options.url}{PATH}"


def _url_to_register(options: WebhookOptions, live: Mapping[str, Any] | None) -> str:
    """URL mode's refresh: keep another replica's URL while something answers on it.

    Every replica serves the webhook, so any live one will do; taking the configuration back
    every minute would make two replicas rewrite it in turn (each write an event for watchers)
    and send a pod created just after a rewrite to a different replica than the one before."""
    own = _own_url(options)
    registered = _registered_url(live)
    if registered is None or registered == own or not _answers(registered):
        return own
    return registered


def _registered_url(live: Mapping[str, Any] | None) -> str | None:
    """The URL the live configuration's first webhook calls; None if absent."""
    for hook in (live or {}).get("webhooks") or []:
        url = (hook.get("clientConfig") or {}).get("url")
        return str(url) if url else None
    return None


def _answers(url: str) -> bool:
    """Whether something accepts connections at the URL's host and port (2 s at most)."""
    parts = urllib.parse.urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "", parts.port or 443), timeout=2.0):
            return True
    except (OSError, ValueError):
        return False


async def keep_registered(
    options: WebhookOptions, material: certs.ServingCertificate, on_registered: Callable[[], None]
) -> None:
    """Register until it works, then re-check every minute.

    Helm creates the webhook configuration after the Deployment, and Argo CD or a reinstall may
    re-create it without a caBundle: a one-time injection at start-up would leave the gate
    rejecting every labelled pod. Readiness waits for the first success.
    """
    refresh = False  # a start registers this replica's own URL (URL mode)
    while True:
        try:
            registered = await asyncio.to_thread(register, options, material, refresh=refresh)
        except (kube.KubeError, kube.ConflictError, kube.NotFoundError) as error:
            log.warning("cannot register the gate webhook: %s", error)
            registered = False
        if registered:
            refresh = True
            on_registered()
        await asyncio.sleep(REGISTER_REFRESH_SECONDS if registered else REGISTER_RETRY_SECONDS)


def configuration_for_url(
    options: WebhookOptions, ca_pem: bytes, url: str | None = None
) -> dict[str, Any]:
    """The configuration for URL mode, calling `url` (default: this replica's)."""
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {
            "name": options.configuration,
            "labels": {"app.kubernetes.io/name": "lockstep"},
        },
        "webhooks": [
            {
                "name": "gate.lockstep.dev",
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                # Fail closed, but only for pods that asked to wait (the object selector).
                "failurePolicy": "Fail",
                "timeoutSeconds": 10,
                "reinvocationPolicy": "Never",
                "objectSelector": {
                    "matchExpressions": [{"key": gate.WAIT_FOR_LABEL, "operator": "Exists"}]
                },
                "rules": [
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE"],
                        "resources": ["pods"],
                        "scope": "Namespaced",
                    }
                ],
                "clientConfig": {
                    "url": url or _own_url(options),
                    "caBundle": base64.b64encode(ca_pem).decode(),
                },
            }
        ],
    }


async def review(request: web.Request) -> web.Response:
    body: Mapping[str, Any] = await request.json()
    admission = body.get("request") or {}
    uid = str(admission.get("uid", ""))
    pod: Mapping[str, Any] = admission.get("object") or {}
    namespace = str(admission.get("namespace") or (pod.get("metadata") or {}).get("namespace"))
    name = ((pod.get("metadata") or {}).get("labels") or {}).get(gate.WAIT_FOR_LABEL)
    if not name:
        return web.json_response(gate.admission_response(uid, [], None))
    verdict = await _verdict(namespace, str(name), pod)
    metrics.admissions.labels("gated" if verdict.gate else "allowed").inc()
    patch = gate.gate_patch(pod) if verdict.gate else []
    warning = f"lockstep: {verdict.message}" if verdict.gate else None
    return web.json_response(gate.admission_response(uid, patch, warning))


async def _verdict(namespace: str, name: str, pod: Mapping[str, Any]) -> gate.Verdict:
    try:
        migration = await asyncio.to_thread(kube.get_migration, namespace, name)
    except kube.NotFoundError:
        return gate.decide(pod, None, name)
    except (kube.KubeError, kube.ConflictError) as error:
        log.warning(
            "cannot read DatabaseMigration %s/%s, gating the pod: %s", namespace, name, error
        )
        return gate.Verdict(True, "Unknown", f"Lockstep could not read {name}: {error}")
    return gate.decide(pod, migration, name)


async def start(options: WebhookOptions, material: certs.ServingCertificate) -> web.AppRunner:
    app = web.Application()
    app.router.add_post(PATH, review)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, options.host, options.port, ssl_context=_ssl(material)).start()
    log.info("serving the rollout gate webhook on %s:%d", options.host, options.port)
    return runner


def _ssl(material: certs.ServingCertificate) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    # load_cert_chain takes files only; /tmp is a private emptyDir in the operator's pod.
    with tempfile.TemporaryDirectory(prefix="lockstep-tls-") as directory:
        cert, key = Path(directory) / "tls.crt", Path(directory) / "tls.key"
        cert.write_bytes(material.cert_pem)
        key.write_bytes(material.key_pem)
        key.chmod(0o600)
        context.load_cert_chain(cert, key)
    return context
