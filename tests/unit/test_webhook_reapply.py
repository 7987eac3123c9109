"""Development mode re-applies the gate's MutatingWebhookConfiguration every minute: it writes
only when the live object is missing something the operator wants (the API server's defaults
do not count)."""

from __future__ import annotations

import copy
import json
import socket
from typing import Any

import pytest

from lockstep.controller import webhook
from lockstep.kube import api, webhook_config

OPTIONS = webhook.WebhookOptions(url="https://127.0.0.1:9443")


def as_served(body: dict[str, Any]) -> dict[str, Any]:
    """What the API server returns: the body plus its defaults and metadata."""
    served = copy.deepcopy(body)
    served["metadata"].update(resourceVersion="41", uid="u-1", generation=1)
    for hook in served["webhooks"]:
        hook.setdefault("matchPolicy", "Equivalent")
        hook.setdefault("namespaceSelector", {})
        hook["rules"][0].setdefault("scope", "*")
    return served


class FakeAdmission:
    """Stands in for `api.request` on MutatingWebhookConfigurations."""

    def __init__(self, live: dict[str, Any] | None) -> None:
        self.live = live
        self.writes: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, method: str, path: str, *, body: Any = None, **_: Any) -> Any:
        assert path.startswith(
            "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"
        )
        if method == "GET":
            if self.live is None:
                raise api.ApiException(status=404, reason="Not Found")
            return type("Response", (), {"data": json.dumps(self.live).encode()})()
        self.writes.append(({"POST": "create", "PUT": "replace"}[method], body))
        return type("Response", (), {"drain_conn": lambda self: None})()


@pytest.fixture
def wanted() -> dict[str, Any]:
    return webhook.configuration_for_url(OPTIONS, b"-----BEGIN CERTIFICATE-----\nca\n")


def apply(monkeypatch: pytest.MonkeyPatch, live: dict[str, Any] | None, body: Any) -> FakeAdmission:
    fake = FakeAdmission(live)
    monkeypatch.setattr(api, "request", fake)
    current = webhook_config.read_mutating_webhook(body["metadata"]["name"])
    webhook_config.apply_mutating_webhook(body, current)
    return fake


def test_an_unchanged_configuration_is_not_written(
    monkeypatch: pytest.MonkeyPatch, wanted: dict[str, Any]
) -> None:
    assert apply(monkeypatch, as_served(wanted), wanted).writes == []


def test_a_new_ca_is_written_with_the_live_resource_version(
    monkeypatch: pytest.MonkeyPatch, wanted: dict[str, Any]
) -> None:
    live = as_served(webhook.configuration_for_url(OPTIONS, b"an older CA"))
    (write,) = apply(monkeypatch, live, wanted).writes
    assert write[0] == "replace"
    assert write[1]["metadata"]["resourceVersion"] == "41"
    assert write[1]["webhooks"] == wanted["webhooks"]


def test_a_hand_edited_policy_or_a_lost_label_is_put_back(
    monkeypatch: pytest.MonkeyPatch, wanted: dict[str, Any]
) -> None:
    edited = as_served(wanted)
    edited["webhooks"][0]["failurePolicy"] = "Ignore"
    assert [w[0] for w in apply(monkeypatch, edited, wanted).writes] == ["replace"]
    unlabelled = as_served(wanted)
    unlabelled["metadata"]["labels"] = {}
    assert [w[0] for w in apply(monkeypatch, unlabelled, wanted).writes] == ["replace"]


def test_an_extra_webhook_added_by_hand_is_removed(
    monkeypatch: pytest.MonkeyPatch, wanted: dict[str, Any]
) -> None:
    extra = as_served(wanted)
    extra["webhooks"].append({**extra["webhooks"][0], "name": "other.example.com"})
    assert [w[0] for w in apply(monkeypatch, extra, wanted).writes] == ["replace"]


def test_a_missing_configuration_is_created(
    monkeypatch: pytest.MonkeyPatch, wanted: dict[str, Any]
) -> None:
    assert [w[0] for w in apply(monkeypatch, None, wanted).writes] == ["create"]


class Registered:
    """Stands in for the live configuration's URL and records what `register` applies."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, live_url: str | None) -> None:
        self.applied: list[str] = []
        live = None if live_url is None else {"webhooks": [{"clientConfig": {"url": live_url}}]}
        monkeypatch.setattr(webhook.kube, "read_mutating_webhook", lambda name: live)
        monkeypatch.setattr(
            webhook.kube,
            "apply_mutating_webhook",
            lambda body, current: self.applied.append(body["webhooks"][0]["clientConfig"]["url"]),
        )


MATERIAL = webhook.certs.ServingCertificate(ca_pem=b"ca", cert_pem=b"c", key_pem=b"k")
OWN = f"{OPTIONS.url}{webhook.PATH}"


def register_beside_a_live_replica(monkeypatch: pytest.MonkeyPatch, refresh: bool) -> list[str]:
    """`register` while another replica listens on the registered URL: the URLs it applied."""
    with socket.create_server(("127.0.0.1", 0)) as other:
        live = f"https://127.0.0.1:{other.getsockname()[1]}{webhook.PATH}"
        registered = Registered(monkeypatch, live)
        assert webhook.register(OPTIONS, MATERIAL, refresh=refresh)
    return [OWN if url == OWN else "live" for url in registered.applied]


def test_a_start_registers_this_replica_even_over_a_live_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert register_beside_a_live_replica(monkeypatch, refresh=False) == [OWN]


def test_a_refresh_keeps_another_replicas_url_while_it_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Applied all the same, with the live URL: a lost CA or rule comes back.
    assert register_beside_a_live_replica(monkeypatch, refresh=True) == ["live"]


def test_a_refresh_takes_the_configuration_back_from_a_replica_that_is_gone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as closed:
        port = closed.getsockname()[1]
    registered = Registered(monkeypatch, f"https://127.0.0.1:{port}{webhook.PATH}")
    assert webhook.register(OPTIONS, MATERIAL, refresh=True)
    assert registered.applied == [OWN]


def test_a_refresh_registers_this_replica_when_nothing_is_registered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registered = Registered(monkeypatch, None)
    assert webhook.register(OPTIONS, MATERIAL, refresh=True)
    assert registered.applied == [OWN]
