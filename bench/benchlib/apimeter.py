"""`ApiMeter`: requests per identity, verb and resource, from the API server's own metrics
(`apiserver_flowcontrol_dispatched_requests_total`, one FlowSchema per identity and request
kind: `apiserver_request_total` has no user label)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from benchlib.common import SYSTEM_NAMESPACE
from benchlib.kube import Identity


@dataclass(frozen=True)
class RequestKind:
    """One FlowSchema rule: requests of these verbs on these resources (or non-resource URLs)."""

    name: str
    verbs: tuple[str, ...]
    resources: tuple[str, ...] = ("*",)
    non_resource: bool = False


# In matching order: the first kind that matches a request counts it.
REQUEST_KINDS = (
    RequestKind("lease", ("*",), ("leases",)),
    RequestKind("watch", ("watch",)),
    RequestKind("list pods", ("list",), ("pods",)),
    RequestKind("list jobs", ("list",), ("jobs",)),
    RequestKind("list databasemigrations", ("list",), ("databasemigrations",)),
    RequestKind("list other", ("list",)),
    RequestKind("get secrets", ("get",), ("secrets",)),
    RequestKind("get configmaps", ("get",), ("configmaps",)),
    RequestKind("get databasemigrations", ("get",), ("databasemigrations",)),
    RequestKind("get mutatingwebhookconfigurations", ("get",), ("mutatingwebhookconfigurations",)),
    RequestKind("get pods/log", ("get",), ("pods/log",)),
    RequestKind("get other", ("get",)),
    RequestKind("create jobs", ("create",), ("jobs",)),
    RequestKind("create events", ("create",), ("events",)),
    RequestKind("create other", ("create",)),
    RequestKind("patch databasemigrations/status", ("patch",), ("databasemigrations/status",)),
    RequestKind("patch pods", ("patch",), ("pods",)),
    RequestKind("patch events", ("patch",), ("events",)),
    RequestKind("patch other", ("patch",)),
    RequestKind(
        "update mutatingwebhookconfigurations", ("update",), ("mutatingwebhookconfigurations",)
    ),
    RequestKind("update other", ("update",)),
    RequestKind("delete", ("delete", "deletecollection")),
    RequestKind("other", ("*",)),
    RequestKind("discovery", ("*",), non_resource=True),
)
# Kinds that are not work on a migration's behalf: streams and leadership.
OVERHEAD_KINDS = frozenset({"lease", "watch", "discovery"})
METRIC = "apiserver_flowcontrol_dispatched_requests_total"
# How long the API server executed each request once dispatched (admission, storage, the
# answer): a histogram per FlowSchema; its _sum and _count give the mean.
EXECUTION = "apiserver_flowcontrol_request_execution_seconds"
FLOW_PREFIX = "lockstep-bench"
# who -> request kind -> (seconds the API server spent executing, requests), so far.
Executed = dict[str, dict[str, tuple[float, float]]]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def flow_schema_name(who: str, kind: RequestKind) -> str:
    return f"{FLOW_PREFIX}-{who}-{_slug(kind.name)}"


class ApiMeter:
    """Counts each identity's requests by kind, as the API server's own metrics report them.

    For every identity and request kind there is a FlowSchema matching only that identity's
    requests of that kind (precedence 20-60, ahead of the built-in schemas but after `exempt`),
    all mapped to the `workload-low` priority level, where a ServiceAccount's requests go
    anyway. `apiserver_flowcontrol_dispatched_requests_total{flow_schema=...}` then counts them.
    A watch is counted once, when it is opened.
    """

    def __init__(self, api: client.ApiClient, scrape: Callable[[], str]) -> None:
        self.api = api
        self.scrape = scrape
        self.identities: dict[str, Identity] = {}

    def install(self, who: str, identity: Identity) -> None:
        flow = client.FlowcontrolApiserverV1Api(self.api)
        subject = {
            "kind": "ServiceAccount",
            "serviceAccount": {"name": identity.name, "namespace": SYSTEM_NAMESPACE},
        }
        for precedence, kind in enumerate(REQUEST_KINDS, start=20):
            rule: dict[str, Any] = {"subjects": [subject]}
            if kind.non_resource:
                rule["nonResourceRules"] = [{"verbs": ["*"], "nonResourceURLs": ["*"]}]
            else:
                rule["resourceRules"] = [
                    {
                        "verbs": list(kind.verbs),
                        "apiGroups": ["*"],
                        "resources": list(kind.resources),
                        "clusterScope": True,
                        "namespaces": ["*"],
                    }
                ]
            body: Any = {
                "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
                "kind": "FlowSchema",
                "metadata": {"name": flow_schema_name(who, kind)},
                "spec": {
                    "matchingPrecedence": precedence,
                    "priorityLevelConfiguration": {"name": "workload-low"},
                    "distinguisherMethod": {"type": "ByUser"},
                    "rules": [rule],
                },
            }
            try:
                flow.create_flow_schema(body)
            except ApiException as error:
                if error.status != 409:
                    raise
        self.identities[who] = identity
        # The API server applies new FlowSchemas within a second or so.
        time.sleep(1.5)

    def snapshot(self) -> dict[str, dict[str, float]]:
        """who -> request kind -> requests so far."""
        return self._counts(self.scrape())

    def readings(self) -> tuple[dict[str, dict[str, float]], Executed]:
        """`snapshot()` and the API server's execution times so far, from one scrape of its
        metrics (a few megabytes of text)."""
        text = self.scrape()
        return self._counts(text), self._executed(text)

    def _counts(self, text: str) -> dict[str, dict[str, float]]:
        names = self._schema_names()
        counts: dict[str, dict[str, float]] = {who: {} for who in self.identities}
        pattern = re.compile(rf'^{METRIC}\{{flow_schema="([^"]+)",priority_level="[^"]*"\}} (\S+)$')
        for line in text.splitlines():
            match = pattern.match(line)
            if match and match.group(1) in names:
                who, kind = names[match.group(1)]
                counts[who][kind] = counts[who].get(kind, 0.0) + float(match.group(2))
        return counts

    def _executed(self, text: str) -> Executed:
        """who -> request kind -> (seconds executing, requests) so far."""
        names = self._schema_names()
        found: Executed = {who: {} for who in self.identities}
        pattern = re.compile(rf'^{EXECUTION}_(sum|count)\{{flow_schema="([^"]+)",[^}}]*\}} (\S+)$')
        for line in text.splitlines():
            match = pattern.match(line)
            if match and match.group(2) in names:
                who, kind = names[match.group(2)]
                seconds, count = found[who].get(kind, (0.0, 0.0))
                value = float(match.group(3))
                if match.group(1) == "sum":
                    seconds += value
                else:
                    count += value
                found[who][kind] = (seconds, count)
        return found

    @staticmethod
    def mean_execution_ms(before: Executed, after: Executed) -> dict[str, dict[str, float]]:
        """who -> request kind -> mean milliseconds the API server executed it, between two
        `readings()` (watches left out: they execute as long as they stay open)."""
        result: dict[str, dict[str, float]] = {}
        for who, kinds in after.items():
            means = {}
            for kind, (seconds, count) in sorted(kinds.items()):
                earlier = before.get(who, {}).get(kind, (0.0, 0.0))
                requests = count - earlier[1]
                if requests > 0 and kind != "watch":
                    means[kind] = round((seconds - earlier[0]) / requests * 1000, 2)
            result[who] = means
        return result

    def _schema_names(self) -> dict[str, tuple[str, str]]:
        return {
            flow_schema_name(who, kind): (who, kind.name)
            for who in self.identities
            for kind in REQUEST_KINDS
        }

    @staticmethod
    def delta(
        before: Mapping[str, Mapping[str, float]], after: Mapping[str, Mapping[str, float]]
    ) -> dict[str, dict[str, int]]:
        result: dict[str, dict[str, int]] = {}
        for who, kinds in after.items():
            changed = {
                kind: int(count - before.get(who, {}).get(kind, 0.0))
                for kind, count in kinds.items()
            }
            result[who] = {k: v for k, v in sorted(changed.items()) if v}
        return result


def work_requests(kinds: Mapping[str, int]) -> int:
    """Requests done on the migrations' behalf: all but watches, leases and discovery."""
    return sum(v for k, v in kinds.items() if k not in OVERHEAD_KINDS)
