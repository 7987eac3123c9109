"""`kubectl lockstep`: rendering, arguments, prompts and error messages, without a cluster."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client.exceptions import ApiException

from lockstep.plugin import client, commands, describe, errors, render, state

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
PLAN_HASH = "p1a2b3c4"


def cond(kind: str, status: str, reason: str, message: str = "") -> dict[str, Any]:
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": "2026-03-01T11:55:00Z",
    }


def migration(
    name: str = "shop",
    namespace: str = "shop",
    conditions: list[dict[str, Any]] | None = None,
    spec: Mapping[str, Any] | None = None,
    annotations: Mapping[str, str] | None = None,
    **status: Any,
) -> dict[str, Any]:
    return {
        "apiVersion": "lockstep.dev/v1alpha1",
        "kind": "DatabaseMigration",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "generation": 1,
            "annotations": dict(annotations or {}),
            "managedFields": [{"manager": "kubectl-client-side-apply"}],
        },
        "spec": {
            "tool": "sql",
            "source": {"configMapRef": {"name": "shop-migrations"}},
            "target": "head",
            "database": {"engine": "postgresql", "urlSecretRef": {"name": "db", "key": "url"}},
            **(spec or {}),
        },
        "status": {
            "observedGeneration": 1,
            "conditions": conditions
            if conditions is not None
            else [cond("Ready", "True", "Succeeded", "at revision 2")],
            **status,
        },
    }


RUN: dict[str, Any] = {
    "job": "shop-a1b2c3d4-r1",
    "direction": "Upgrade",
    "result": "Succeeded",
    "reason": "Succeeded",
    "from": "",
    "to": "2",
    "startedAt": "2026-03-01T11:50:00Z",
    "finishedAt": "2026-03-01T11:50:04Z",
    "durationSeconds": 4.2,
    "logTail": "applying V1__create_customers.sql\napplying V2__create_orders.sql\n",
}
OLDER_RUN: dict[str, Any] = {
    **RUN,
    "job": "shop-00000000-r1",
    "result": "Failed",
    "reason": "Failed",
}

PLAN = {
    "hash": PLAN_HASH,
    "available": True,
    "classification": "Destructive",
    "direction": "Upgrade",
    "from": "2",
    "to": "3",
    "migrations": ["V3__drop_email.sql"],
    "statements": 2,
    "summary": {"ALTER TABLE": 1, "DROP COLUMN": 1},
    "destructive": ["ALTER TABLE customers DROP COLUMN email"],
    "findings": [
        {
            "rule": "drop-column",
            "severity": "destructive",
            "message": "dropping column email loses its data",
            "file": "V3__drop_email.sql",
            "line": 4,
            "statement": "ALTER TABLE customers DROP COLUMN email",
        }
    ],
    "findingsOmitted": 2,
}


def awaiting(**extra: Any) -> dict[str, Any]:
    return migration(
        conditions=[
            cond("Ready", "False", "AwaitingApproval", f"plan {PLAN_HASH} waits for approval")
        ],
        spec={"approval": "Always"},
        plan=dict(PLAN),
        **extra,
    )


class FakeCluster:
    """An in-memory `commands.Cluster`; `fail` makes every call raise that error."""

    server = "https://127.0.0.1:6443"
    default_namespace = "shop"

    def __init__(self, *items: dict[str, Any], fail: errors.PluginError | None = None) -> None:
        self.items = {(state.namespace_of(i), state.name_of(i)): i for i in items}
        self.patches: list[tuple[str, str, dict[str, Any]]] = []
        self.jobs: list[dict[str, Any]] = []
        self.pods: dict[str, list[dict[str, Any]]] = {}
        self.logs: dict[tuple[str, str], str] = {}
        self.fail = fail
        self.reads = 0
        self.after_first_read: dict[str, Any] | None = None

    def _check(self) -> None:
        if self.fail is not None:
            raise self.fail

    def list_migrations(self, namespace: str | None) -> list[dict[str, Any]]:
        self._check()
        return [i for (ns, _), i in sorted(self.items.items()) if namespace in (None, ns)]

    def get_migration(self, namespace: str, name: str) -> dict[str, Any]:
        self._check()
        self.reads += 1
        if self.reads > 1 and self.after_first_read is not None:
            return self.after_first_read
        try:
            return self.items[(namespace, name)]
        except KeyError:
            raise errors.NotFoundError("databasemigration", name, namespace) from None

    def patch_migration(
        self, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> dict[str, Any]:
        self._check()
        self.patches.append((namespace, name, dict(patch)))
        return self.items[(namespace, name)]

    def jobs_of(self, namespace: str, migration: str) -> list[dict[str, Any]]:
        return list(self.jobs)

    def get_job(self, namespace: str, name: str) -> dict[str, Any]:
        for job in self.jobs:
            if job["metadata"]["name"] == name:
                return job
        raise errors.NotFoundError("job", name, namespace)

    def pods_of_job(self, namespace: str, job: str) -> list[dict[str, Any]]:
        return self.pods.get(job, [])

    def pod_log(self, namespace: str, pod: str, container: str, follow: bool) -> Iterator[str]:
        yield from self.logs[(pod, container)].splitlines(keepends=True)


class TtyInput(io.StringIO):
    def isatty(self) -> bool:
        return True


def run(
    cluster: FakeCluster, *argv: str, stdin: io.StringIO | None = None, color: bool = False
) -> tuple[int, str, str]:
    terminal = commands.Terminal(
        stdin=stdin if stdin is not None else io.StringIO(),
        stdout=io.StringIO(),
        stderr=io.StringIO(),
        color=color,
        now=NOW,
    )
    code = commands.main(list(argv), connect=lambda _k, _c: cluster, terminal=terminal)
    return code, terminal.stdout.getvalue(), terminal.stderr.getvalue()  # type: ignore[attr-defined]


# --- state and status table -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("conditions", "label", "tone"),
    [
        ([cond("Ready", "True", "Succeeded")], "Ready", "ok"),
        ([cond("Ready", "True", "UpToDate")], "Ready", "ok"),
        (
            [cond("Ready", "True", "Succeeded"), cond("Drifted", "True", "DriftDetected")],
            "Drifted",
            "busy",
        ),
        ([cond("Ready", "False", "AwaitingApproval")], "AwaitingApproval", "busy"),
        (
            [cond("Ready", "False", "JobRunning"), cond("Reconciling", "True", "JobRunning")],
            "Running",
            "busy",
        ),
        (
            [cond("Ready", "False", "Planning"), cond("Reconciling", "True", "Planning")],
            "Planning",
            "busy",
        ),
        (
            [
                cond("Ready", "False", "RetryScheduled"),
                cond("Reconciling", "True", "RetryScheduled"),
            ],
            "Retrying",
            "busy",
        ),
        ([cond("Ready", "False", "Failed")], "Failed", "bad"),
        ([cond("Ready", "False", "RehearsalFailed")], "Failed", "bad"),
        (
            [
                cond("Ready", "False", "RetriesExhausted"),
                cond("Stalled", "True", "RetriesExhausted"),
            ],
            "Stalled",
            "bad",
        ),
        ([cond("Ready", "False", "Suspended")], "Suspended", "plain"),
        ([cond("Ready", "False", "SecretNotFound")], "SecretNotFound", "bad"),
        ([], "Pending", "busy"),
    ],
)
def test_state_comes_from_the_conditions(
    conditions: list[dict[str, Any]], label: str, tone: str
) -> None:
    current = state.state_of(migration(conditions=conditions))
    assert (current.label, current.tone) == (label, tone)


def test_a_spec_the_operator_has_not_seen_yet_is_pending() -> None:
    item = migration()
    item["metadata"]["generation"] = 2
    assert state.state_of(item).label == "Pending"


def test_status_table_has_the_columns_and_one_row_per_migration() -> None:
    ready = migration(appliedRevision="2", lastRun=RUN, history=[RUN], gatedPods=3)
    running = migration(
        name="billing",
        conditions=[
            cond("Ready", "False", "JobRunning"),
            cond("Reconciling", "True", "JobRunning"),
        ],
        activeJob={"name": "billing-1-r1", "attempt": 1, "startedAt": "2026-03-01T11:59:30Z"},
    )
    text = render.status_table([running, ready], all_namespaces=False, now=NOW, color=False)
    header, first, second = text.splitlines()
    assert header.split() == ["NAME", "TOOL", "APPLIED", "TARGET", "STATE", "LAST", "RUN", "GATED"]
    assert first.split() == ["billing", "sql", "-", "head", "Running", "Running", "30s", "0"]
    assert second.split() == ["shop", "sql", "2", "head", "Ready", "Succeeded", "9m56s", "3"]
    assert header.index("STATE") == first.index("Running") == second.index("Ready")


def test_status_table_with_all_namespaces_starts_with_the_namespace() -> None:
    text = render.status_table([migration(namespace="team-a")], True, NOW, False)
    assert text.splitlines()[0].split()[:2] == ["NAMESPACE", "NAME"]
    assert text.splitlines()[1].split()[:2] == ["team-a", "shop"]


def test_colours_mark_states_only_when_asked() -> None:
    failed = migration(conditions=[cond("Ready", "False", "Failed")], lastRun=OLDER_RUN)
    items = [migration(), failed]
    plain = render.status_table(items, False, NOW, color=False)
    coloured = render.status_table(items, False, NOW, color=True)
    assert "\x1b[" not in plain
    assert "\x1b[32mReady" in coloured
    assert "\x1b[31mFailed" in coloured
    assert render.paint("x", "busy", True) == "\x1b[33mx\x1b[0m"
    # Colour codes do not shift the columns.
    strip = coloured.replace("\x1b[32m", "").replace("\x1b[31m", "").replace("\x1b[0m", "")
    assert strip == plain


def test_colour_needs_a_terminal_and_no_no_color() -> None:
    tty = TtyInput()
    assert commands.use_color(tty, {}) is True
    assert commands.use_color(tty, {"NO_COLOR": "1"}) is False
    assert commands.use_color(tty, {"TERM": "dumb"}) is False
    assert commands.use_color(io.StringIO(), {}) is False


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(5, "5s"), (119, "119s"), (190, "3m10s"), (600, "10m"), (3 * 3600 + 60, "3h1m"),
     (30 * 3600, "30h"), (3 * 86400 + 3600, "3d1h"), (40 * 86400, "40d")],
)  # fmt: skip
def test_ages_read_like_kubectl(seconds: int, text: str) -> None:
    assert render.duration(seconds) == text


# --- describe and machine-readable output -----------------------------------------------------


def test_describe_shows_spec_conditions_plan_findings_history_and_log_tail() -> None:
    item = awaiting(appliedRevision="2", lastRun=RUN, history=[RUN, OLDER_RUN])
    text = describe.describe(item, NOW, color=False)
    assert "State:      AwaitingApproval" in text
    assert "Source:      ConfigMap shop-migrations" in text
    assert "Approval:    Always" in text
    assert f"Hash:            {PLAN_HASH}" in text
    assert "Classification:  Destructive" in text
    assert "Direction:       Upgrade 2 → 3" in text
    assert "Statements:      2 (ALTER TABLE 1, DROP COLUMN 1)" in text
    assert "ALTER TABLE customers DROP COLUMN email" in text
    finding = next(line for line in text.splitlines() if "V3__drop_email.sql:4" in line)
    assert finding.split()[:3] == ["V3__drop_email.sql:4", "drop-column", "destructive"]
    assert finding.endswith("dropping column email loses its data")
    assert "2 more finding(s)" in text
    history = text[text.index("History (newest first):") :]
    assert history.index(RUN["job"]) < history.index(OLDER_RUN["job"])
    assert "empty → 2" in history and "4.2s" in history
    assert "Log tail of shop-a1b2c3d4-r1:\n  applying V1__create_customers.sql" in text
    conditions = text[text.index("Conditions:") : text.index("Plan:")]
    assert "Ready" in conditions and "AwaitingApproval" in conditions and "5m" in conditions


def test_describe_of_a_fresh_resource_says_none() -> None:
    text = describe.describe(migration(conditions=[]), NOW, color=False)
    assert "State:      Pending" in text
    assert "Plan:        <none>" in text and "History:     <none>" in text


def test_status_json_is_a_list_of_the_objects_without_managed_fields() -> None:
    cluster = FakeCluster(migration(appliedRevision="2"), migration(name="b", namespace="other"))
    code, out, _ = run(cluster, "status", "-o", "json")
    assert code == 0
    document = json.loads(out)
    assert document["kind"] == "List"
    assert [i["metadata"]["name"] for i in document["items"]] == ["shop"]
    assert document["items"][0]["status"]["appliedRevision"] == "2"
    assert "managedFields" not in document["items"][0]["metadata"]
    code, out, _ = run(cluster, "status", "-A", "-o", "yaml")
    assert [i["metadata"]["name"] for i in yaml.safe_load(out)["items"]] == ["b", "shop"]


def test_describe_yaml_is_the_object() -> None:
    code, out, _ = run(FakeCluster(awaiting()), "describe", "shop", "-o", "yaml")
    assert code == 0
    assert yaml.safe_load(out)["status"]["plan"]["hash"] == PLAN_HASH


def test_empty_namespace_says_so_on_stderr() -> None:
    code, out, err = run(FakeCluster(), "status", "-n", "empty")
    assert (code, out) == (0, "")
    assert "No DatabaseMigrations found in namespace 'empty'" in err


# --- argument parsing -------------------------------------------------------------------------


def test_connection_flags_work_before_and_after_the_verb() -> None:
    parser = commands.build_parser()
    before = parser.parse_args(["--context", "c", "-n", "x", "--kubeconfig", "k", "status", "-A"])
    after = parser.parse_args(["status", "--context", "c", "-n", "x", "--kubeconfig", "k", "-A"])
    for args in (before, after):
        assert (args.context, args.namespace, args.kubeconfig) == ("c", "x", "k")
        assert args.all_namespaces and args.output == "table"
    default = parser.parse_args(["-n", "x", "describe", "shop"])
    assert (default.namespace, default.name, default.context) == ("x", "shop", None)


def test_verbs_take_their_own_flags() -> None:
    parser = commands.build_parser()
    assert parser.parse_args(["rollback", "shop", "--to", "1", "--yes"]).to == "1"
    logs = parser.parse_args(["logs", "shop", "--job", "j", "-f"])
    assert (logs.job, logs.follow) == ("j", True)
    assert parser.parse_args(["approve", "shop", "-y"]).yes is True
    with pytest.raises(SystemExit):
        parser.parse_args(["rollback", "shop"])  # --to is required
    with pytest.raises(SystemExit):
        parser.parse_args(["status", "-o", "wide"])
    with pytest.raises(SystemExit):
        parser.parse_args(["logs", "shop", "-A"])


def test_namespace_defaults_to_the_context_namespace() -> None:
    cluster = FakeCluster(migration(namespace="shop"), migration(namespace="other"))
    _, out, _ = run(cluster, "status")
    assert len(out.splitlines()) == 2  # header and the one in "shop"


# --- approve ----------------------------------------------------------------------------------


APPROVAL = {"metadata": {"annotations": {"lockstep.dev/approve": PLAN_HASH}}}


def test_approve_asks_and_annotates_the_plan_hash_on_yes() -> None:
    cluster = FakeCluster(awaiting())
    code, out, err = run(cluster, "approve", "shop", stdin=TtyInput("y\n"))
    assert code == 0, err
    assert "DROP COLUMN email" in out and "V3__drop_email.sql:4" in out
    assert f"Approve plan {PLAN_HASH} for shop? [y/N] " in out
    assert cluster.patches == [("shop", "shop", APPROVAL)]


@pytest.mark.parametrize("answer", ["\n", "n\n", "no\n", ""])
def test_approve_does_nothing_unless_the_answer_is_yes(answer: str) -> None:
    cluster = FakeCluster(awaiting())
    code, _, err = run(cluster, "approve", "shop", stdin=TtyInput(answer))
    assert code == 1
    assert err == "error: not approved: nothing changed\n"
    assert cluster.patches == []


def test_approve_without_a_terminal_needs_yes() -> None:
    cluster = FakeCluster(awaiting())
    code, _, err = run(cluster, "approve", "shop", stdin=io.StringIO("y\n"))
    assert code == 1
    assert "stdin is not a terminal" in err and "pass --yes" in err
    assert cluster.patches == []
    code, _, _ = run(cluster, "approve", "shop", "--yes", stdin=io.StringIO())
    assert code == 0
    assert cluster.patches == [("shop", "shop", APPROVAL)]


def test_approve_refuses_without_a_plan() -> None:
    cluster = FakeCluster(migration(conditions=[cond("Ready", "False", "Planning")]))
    code, _, err = run(cluster, "approve", "shop", "--yes")
    assert code == 1
    assert "has no plan yet" in err and cluster.patches == []


def test_approve_refuses_when_not_awaiting_approval_even_with_yes() -> None:
    cluster = FakeCluster(migration(plan=dict(PLAN)))  # Ready / Succeeded
    code, _, err = run(cluster, "approve", "shop", "--yes")
    assert code == 1
    assert "is not awaiting approval (Ready reason: Succeeded)" in err
    assert cluster.patches == []


def test_approve_of_an_approved_plan_changes_nothing() -> None:
    cluster = FakeCluster(
        awaiting(),
    )
    cluster.items[("shop", "shop")]["metadata"]["annotations"]["lockstep.dev/approve"] = PLAN_HASH
    code, out, _ = run(cluster, "approve", "shop")
    assert code == 0 and "already approved" in out and cluster.patches == []


def test_approve_refuses_when_the_plan_changed_while_asking() -> None:
    cluster = FakeCluster(awaiting())
    changed = awaiting()
    changed["status"]["plan"]["hash"] = "newhash1"
    cluster.after_first_read = changed
    code, _, err = run(cluster, "approve", "shop", stdin=TtyInput("y\n"))
    assert code == 1
    assert "changed while you decided (now newhash1)" in err and cluster.patches == []


# --- retry, rollback, logs --------------------------------------------------------------------


def test_retry_annotates_a_fresh_timestamp() -> None:
    cluster = FakeCluster(migration(conditions=[cond("Stalled", "True", "x")], failures=3))
    code, out, err = run(cluster, "retry", "shop")
    assert code == 0 and err == ""
    (_, _, patch) = cluster.patches[0]
    assert patch == {
        "metadata": {"annotations": {"lockstep.dev/retry": "2026-03-01T12:00:00.000000Z"}}
    }
    assert "lockstep.dev/retry=2026-03-01T12:00:00.000000Z" in out


def test_retry_without_failures_notes_there_is_nothing_to_retry() -> None:
    code, _, err = run(FakeCluster(migration()), "retry", "shop")
    assert code == 0 and "nothing to retry" in err


def test_rollback_refuses_while_downgrade_is_forbidden() -> None:
    cluster = FakeCluster(migration(appliedRevision="2"))
    code, _, err = run(cluster, "rollback", "shop", "--to", "1", "--yes")
    assert code == 1
    assert "spec.downgrade: Forbid" in err and "set spec.downgrade: Allow (in git" in err
    assert len(err.splitlines()) == 1 and cluster.patches == []


def test_rollback_patches_the_target_and_warns_about_gitops() -> None:
    item = migration(spec={"downgrade": "Allow"}, appliedRevision="2")
    item["metadata"]["managedFields"].append({"manager": "argocd-controller"})
    cluster = FakeCluster(item)
    code, out, err = run(cluster, "rollback", "shop", "--to", "1", "--yes")
    assert code == 0
    assert cluster.patches == [("shop", "shop", {"spec": {"target": "1"}})]
    assert "spec.target head → 1" in out
    assert "Argo CD manages this resource" in err and "in git too" in err


def test_rollback_asks_on_a_terminal() -> None:
    cluster = FakeCluster(migration(spec={"downgrade": "Allow"}, appliedRevision="2"))
    code, out, _ = run(cluster, "rollback", "shop", "--to", "1", stdin=TtyInput("n\n"))
    assert code == 1 and "Roll back shop: spec.target head → 1 (applied 2)? [y/N]" in out
    assert cluster.patches == []


def job(name: str, created: str, phase: str | None = None) -> dict[str, Any]:
    labels = {"lockstep.dev/migration": "shop"}
    if phase:
        labels["lockstep.dev/phase"] = phase
    return {"metadata": {"name": name, "creationTimestamp": created, "labels": labels}}


def test_logs_read_the_migrate_container_of_the_newest_migrate_job() -> None:
    cluster = FakeCluster(migration())
    cluster.jobs = [
        job("shop-old-r1", "2026-03-01T10:00:00Z"),
        job("shop-new-r1", "2026-03-01T11:00:00Z"),
        job("shop-plan", "2026-03-01T11:30:00Z", phase="plan"),
    ]
    cluster.pods = {"shop-new-r1": [job("shop-new-r1-abcde", "2026-03-01T11:00:01Z")]}
    cluster.logs = {("shop-new-r1-abcde", "migrate"): "applied 2 migration(s)\n"}
    code, out, _ = run(cluster, "logs", "shop")
    assert (code, out) == (0, "applied 2 migration(s)\n")


def test_logs_of_a_job_without_pods_fall_back_to_the_recorded_tail() -> None:
    cluster = FakeCluster(migration(lastRun=RUN, history=[RUN]))
    cluster.jobs = [job(RUN["job"], "2026-03-01T11:50:00Z")]
    code, out, err = run(cluster, "logs", "shop", "--job", RUN["job"])
    assert code == 0
    assert out == RUN["logTail"]
    assert "has no pods left" in err


def test_logs_of_an_unknown_job_is_a_clear_error() -> None:
    code, _, err = run(FakeCluster(migration()), "logs", "shop", "--job", "nope")
    assert code == 1
    assert err == "error: job 'nope' not found in namespace 'shop'\n"


# --- errors -----------------------------------------------------------------------------------


def test_a_missing_migration_names_namespace_and_hints_at_status_a() -> None:
    code, out, err = run(FakeCluster(), "describe", "nope")
    assert (code, out) == (1, "")
    assert err == (
        "error: databasemigration 'nope' not found in namespace 'shop'; "
        "list them with: kubectl lockstep status -A\n"
    )


@pytest.mark.parametrize("verb", [["status"], ["describe", "x"], ["retry", "x"], ["logs", "x"]])
def test_rbac_denial_is_one_line_with_what_to_ask_for(verb: list[str]) -> None:
    denied = errors.ForbiddenError(
        "get", errors.RESOURCE, "shop", "system:serviceaccount:shop:viewer"
    )
    code, _, err = run(FakeCluster(fail=denied), *verb)
    assert code == 1
    assert err == (
        "error: you may not get databasemigrations.lockstep.dev in namespace 'shop' (RBAC): ask "
        "for a Role in 'shop' that allows 'get' on databasemigrations.lockstep.dev "
        "(you are system:serviceaccount:shop:viewer)\n"
    )


def api_exception(status: int, body: Mapping[str, Any] | str) -> ApiException:
    error = ApiException(status=status, reason="x")
    error.body = body if isinstance(body, str) else json.dumps(body)
    return error


def test_a_403_from_the_api_names_verb_resource_namespace_and_user() -> None:
    message = (
        'databasemigrations.lockstep.dev is forbidden: User "system:serviceaccount:a:b" cannot '
        'list resource "databasemigrations" in API group "lockstep.dev" in the namespace "a"'
    )
    error = client.translate_api_error(
        api_exception(403, {"kind": "Status", "message": message, "reason": "Forbidden"}),
        "https://k",
        "list",
        errors.RESOURCE,
        "a",
    )
    assert isinstance(error, errors.ForbiddenError)
    assert str(error).startswith("you may not list databasemigrations.lockstep.dev in namespace")
    assert "(you are system:serviceaccount:a:b)" in str(error)
    everywhere = client.translate_api_error(api_exception(403, ""), "s", "list", "r", None)
    assert "in all namespaces" in str(everywhere) and "ClusterRole" in str(everywhere)


def test_a_404_is_a_missing_object_or_a_missing_crd() -> None:
    missing = {"kind": "Status", "reason": "NotFound", "details": {"name": "shop"}}
    error = client.translate_api_error(
        api_exception(404, missing), "https://k", "get", errors.RESOURCE, "ns", "shop"
    )
    assert isinstance(error, errors.NotFoundError)
    assert "databasemigration 'shop' not found in namespace 'ns'" in str(error)
    for body in ("404 page not found", {"kind": "Status", "reason": "NotFound", "details": {}}):
        error = client.translate_api_error(
            api_exception(404, body), "https://k", "get", errors.RESOURCE, "ns", "shop"
        )
        assert isinstance(error, errors.CrdMissingError)
        assert "CRD is not installed" in str(error)
    listed = client.translate_api_error(
        api_exception(404, "404 page not found"), "https://k", "list", errors.RESOURCE, "ns"
    )
    assert isinstance(listed, errors.CrdMissingError)


def test_a_crd_missing_error_reaches_the_user_as_one_line() -> None:
    code, _, err = run(FakeCluster(fail=errors.CrdMissingError("https://k")), "status")
    assert code == 1 and len(err.splitlines()) == 1 and "not installed" in err


def kubeconfig(path: Path, server: str = "https://127.0.0.1:1", namespace: str = "") -> Path:
    context: dict[str, str] = {"cluster": "c", "user": "u"}
    if namespace:
        context["namespace"] = namespace
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "c", "cluster": {"server": server, "insecure-skip-tls-verify": True}}
        ],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [
            {"name": "dev", "context": context},
            {"name": "prod", "context": {"cluster": "c", "user": "u"}},
        ],
        "current-context": "dev",
    }
    path.write_text(json.dumps(document))
    return path


def test_an_unknown_context_lists_the_known_ones(tmp_path: Path) -> None:
    path = kubeconfig(tmp_path / "config")
    with pytest.raises(errors.ContextNotFoundError) as caught:
        client.connect(str(path), "staging")
    assert str(caught.value) == f"context 'staging' not found in {path}; contexts: dev, prod"


def test_the_default_namespace_comes_from_the_context(tmp_path: Path) -> None:
    path = kubeconfig(tmp_path / "config", namespace="team-a")
    assert client.connect(str(path), None).default_namespace == "team-a"
    assert client.connect(str(path), "prod").default_namespace == "default"


def test_kubeconfig_from_the_environment_and_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = kubeconfig(tmp_path / "config", namespace="from-env")
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path / 'absent'}:{path}")
    assert client.connect(None, None).default_namespace == "from-env"
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(errors.ConfigError, match="absent not found: pass --kubeconfig"):
        client.connect(None, None)


def test_an_unreachable_server_is_one_line(tmp_path: Path) -> None:
    path = kubeconfig(tmp_path / "config")  # port 1 on loopback: refused at once
    terminal = commands.Terminal(stdout=io.StringIO(), stderr=io.StringIO(), now=NOW)
    code = commands.main(["--kubeconfig", str(path), "status"], terminal=terminal)
    assert code == 1
    err = terminal.stderr.getvalue()  # type: ignore[attr-defined]
    assert err.startswith("error: cannot reach the Kubernetes API server at https://127.0.0.1:1")
    assert len(err.splitlines()) == 1


def test_the_light_plugin_package_carries_every_lockstep_module_the_plugin_imports() -> None:
    """tools/build_plugin.py ships the plugin with a list of Lockstep's modules: the list must be
    what the plugin really imports, or the standalone `kubectl lockstep` fails at start."""
    import subprocess
    import sys

    import build_plugin

    probe = (
        "import sys, lockstep.plugin.commands, lockstep.plugin.client;"
        "print('\\n'.join(sorted(m for m in sys.modules if m.startswith('lockstep'))))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.split()
    top_level = {m.split(".")[1] + ".py" for m in loaded if m.count(".") == 1 and "plugin" not in m}
    assert top_level | {"__init__.py"} == set(build_plugin.PLUGIN_MODULES)
