"""Plans, approvals and rehearsal refusals in the pure reconcile decision."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from lockstep import constants
from lockstep.jobs import job_spec, naming
from lockstep.model import parse_spec
from lockstep.planning import approval, chain, facts
from lockstep.planning.facts import JobView, Observed, Outcome

NOW = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)
HASH = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9"
SALT = HASH[:16]
OTHER_HASH = "0f0f0f0f" + HASH[8:]

SPEC = {
    "tool": "sql",
    "source": {"configMapRef": {"name": "shop-migrations"}},
    "database": {"engine": "postgresql", "urlSecretRef": {"name": "shop-db", "key": "url"}},
    "approval": "Destructive",
}

DESTRUCTIVE_PLAN = {
    "hash": "1111222233334444",
    "available": True,
    "classification": "Destructive",
    "direction": "Upgrade",
    "migrations": ["V3__drop_legacy.sql"],
    "statements": 1,
    "findings": [
        {
            "rule": "drop-table",
            "severity": "destructive",
            "message": "drops a table and its data",
            "file": "V3__drop_legacy.sql",
            "line": 2,
            "statement": "DROP TABLE legacy_orders",
        }
    ],
}
ADDITIVE_PLAN = {**DESTRUCTIVE_PLAN, "hash": "5555666677778888", "classification": "Additive"}


def observed(spec: dict[str, Any] | None = None, **changes: Any) -> Observed:
    base = Observed(
        name="shop",
        generation=2,
        spec=parse_spec({**SPEC, **(spec or {})}),
        spec_hash=HASH,
        status={"specHash": HASH},
        now=NOW,
    )
    return replace(base, **changes)


def plan_job(state: str = "Succeeded", attempt: int = 0) -> JobView:
    return JobView(
        name=naming.job_name("shop", HASH, attempt, constants.PHASE_PLAN),
        spec_hash=HASH[:8],
        attempt=attempt,
        state=state,  # type: ignore[arg-type]
        phase=constants.PHASE_PLAN,
        started_at=NOW - timedelta(seconds=5),
        finished_at=None if state == "Active" else NOW - timedelta(seconds=1),
    )


def stored(plan: dict[str, Any], salt: str = SALT) -> dict[str, Any]:
    return approval.stored_plan(plan, salt, naming.job_name("shop", HASH, 0, constants.PHASE_PLAN))


def ready(decision: facts.Decision) -> dict[str, Any]:
    return next(c for c in decision.status["conditions"] if c["type"] == constants.READY)


def has_condition(decision: facts.Decision, kind: str) -> bool:
    return any(c["type"] == kind for c in decision.status["conditions"])


def reasons(decision: facts.Decision) -> list[str]:
    return [e.reason for e in decision.events]


class TestPlanning:
    def test_approval_needed_starts_with_a_read_only_plan_job(self) -> None:
        decision = chain.plan(observed())
        request = decision.create_job
        assert request is not None and request.is_plan
        assert request.plan_salt == SALT
        assert ready(decision)["reason"] == "Planning"
        assert decision.status["activeJob"]["name"] == "shop-a1b2c3d4-p0"

    def test_no_approval_runs_at_once_and_plans_inside_the_run(self) -> None:
        decision = chain.plan(observed({"approval": "None"}))
        request = decision.create_job
        assert request is not None and not request.is_plan
        assert request.plan_salt == SALT and request.expect_plan is None

    def test_plan_jobs_are_named_apart_from_runs_and_fit_63_characters(self) -> None:
        assert naming.job_name("shop", HASH, 2, constants.PHASE_PLAN) == "shop-a1b2c3d4-p2"
        assert len(naming.job_name("x" * 48, HASH, 100, constants.PHASE_PLAN)) <= 63

    def test_running_plan_job_reads_as_planning(self) -> None:
        decision = chain.plan(observed(jobs=(plan_job("Active"),)))
        assert decision.create_job is None
        assert ready(decision)["reason"] == "Planning"

    def test_finished_plan_is_stored_for_this_spec_with_an_event(self) -> None:
        outcome = Outcome(job=plan_job().name, succeeded=True, plan=DESTRUCTIVE_PLAN)
        decision = chain.plan(observed(jobs=(plan_job(),), outcome=outcome))
        plan = decision.status["plan"]
        assert plan["hash"] == DESTRUCTIVE_PLAN["hash"]
        assert plan["specHash"] == SALT and plan["job"] == plan_job().name
        planned = next(e for e in decision.events if e.reason == "Planned")
        assert planned.type == "Warning" and "drop-table" in planned.message
        assert ready(decision)["reason"] == "AwaitingApproval"
        assert "history" not in decision.status  # a plan is not a run
        assert decision.status["pendingCount"] == 1

    def test_plan_job_without_a_plan_is_a_failed_attempt(self) -> None:
        outcome = Outcome(job=plan_job().name, succeeded=True)
        decision = chain.plan(observed(jobs=(plan_job(),), outcome=outcome))
        assert decision.status["failures"] == 1
        assert decision.status["lastRun"]["direction"] == "Plan"
        assert decision.create_job is None

    def test_failed_plan_job_retries_with_the_next_plan_attempt(self) -> None:
        failed = Outcome(job=plan_job("Failed").name, succeeded=False, reason="InvalidSource")
        first = chain.plan(observed(jobs=(plan_job("Failed"),), outcome=failed))
        assert first.status["lastRun"]["direction"] == "Plan"
        assert ready(first)["reason"] == "InvalidSource"  # a bad source is permanent


class TestApproval:
    def awaiting(self, **changes: Any) -> facts.Decision:
        status = {"specHash": HASH, "plan": stored(DESTRUCTIVE_PLAN)}
        return chain.plan(observed(status=status, jobs=(plan_job(),), **changes))

    def test_destructive_plan_waits_in_progress_not_stalled(self) -> None:
        decision = self.awaiting()
        condition = ready(decision)
        assert decision.create_job is None
        assert condition["status"] == "False" and condition["reason"] == "AwaitingApproval"
        assert DESTRUCTIVE_PLAN["hash"] in condition["message"]
        assert "kubectl lockstep approve shop" in condition["message"]
        assert not has_condition(decision, constants.STALLED)
        assert reasons(decision) == ["AwaitingApproval"]

    def test_waiting_again_records_no_new_event(self) -> None:
        first = self.awaiting()
        again = chain.plan(
            observed(status={**first.status}, jobs=(plan_job(),)),
        )
        assert reasons(again) == []
        assert ready(again)["reason"] == "AwaitingApproval"

    def test_approval_of_another_plan_is_ignored_and_said_so(self) -> None:
        decision = self.awaiting(approved_plan="9999999999999999")
        assert decision.create_job is None
        assert "ApprovalIgnored" in reasons(decision)
        assert "9999999999999999" in ready(decision)["message"]

    def test_approval_of_this_plan_runs_it_pinned_to_the_plan(self) -> None:
        decision = self.awaiting(approved_plan=DESTRUCTIVE_PLAN["hash"])
        request = decision.create_job
        assert request is not None and not request.is_plan
        assert request.expect_plan == DESTRUCTIVE_PLAN["hash"]
        created = next(e for e in decision.events if e.reason == "JobCreated")
        assert DESTRUCTIVE_PLAN["hash"] in created.message

    def test_additive_plan_needs_no_approval_under_destructive(self) -> None:
        status = {"specHash": HASH, "plan": stored(ADDITIVE_PLAN)}
        decision = chain.plan(observed(status=status, jobs=(plan_job(),)))
        assert decision.create_job is not None
        assert decision.create_job.expect_plan == ADDITIVE_PLAN["hash"]

    def test_always_asks_even_for_an_additive_plan(self) -> None:
        status = {"specHash": HASH, "plan": stored(ADDITIVE_PLAN)}
        decision = chain.plan(observed({"approval": "Always"}, status=status, jobs=(plan_job(),)))
        assert decision.create_job is None
        assert ready(decision)["reason"] == "AwaitingApproval"
        assert "spec.approval is Always" in ready(decision)["message"]

    def test_a_new_spec_needs_a_new_plan_and_a_new_approval(self) -> None:
        old_plan = stored(DESTRUCTIVE_PLAN, salt=OTHER_HASH[:16])
        decision = chain.plan(
            observed(
                status={"specHash": HASH, "plan": old_plan},
                approved_plan=DESTRUCTIVE_PLAN["hash"],
            )
        )
        assert decision.create_job is not None and decision.create_job.is_plan
        assert "plan" not in decision.status

    def test_plan_changed_marks_the_plan_stale_and_plans_again_later(self) -> None:
        run = JobView(
            name="shop-a1b2c3d4",
            spec_hash=HASH[:8],
            attempt=0,
            state="Failed",
            started_at=NOW - timedelta(seconds=3),
            finished_at=NOW - timedelta(seconds=1),
        )
        outcome = Outcome(
            job=run.name, succeeded=False, reason="PlanChanged", message="the plan changed"
        )
        status = {"specHash": HASH, "plan": stored(DESTRUCTIVE_PLAN)}
        decision = chain.plan(
            observed(
                status=status,
                jobs=(plan_job(), run),
                outcome=outcome,
                approved_plan=DESTRUCTIVE_PLAN["hash"],
            )
        )
        assert decision.status["plan"]["stale"] is True
        assert "PlanChanged" in reasons(decision)
        assert decision.create_job is None  # backoff first, then a new plan
        later = chain.plan(
            observed(
                status={**decision.status, "nextRetryAt": None},
                jobs=(plan_job(), run),
                approved_plan=DESTRUCTIVE_PLAN["hash"],
            )
        )
        assert later.create_job is not None and later.create_job.is_plan
        assert later.create_job.attempt == 1


IMAGE_SPEC = {"tool": "flyway", "image": "shop:2", "source": None}


class TestImageTools:
    def spec(self, **more: Any) -> dict[str, Any]:
        raw = {**SPEC, **IMAGE_SPEC, **more}
        return {k: v for k, v in raw.items() if v is not None}

    def test_unavailable_plan_needs_approval_under_destructive(self) -> None:
        decision = chain.plan(replace(observed(), spec=parse_spec(self.spec())))
        plan = decision.status["plan"]
        assert plan["available"] is False and plan["classification"] == "Unknown"
        assert "flyway" in plan["unavailableReason"]
        assert decision.create_job is None
        assert ready(decision)["reason"] == "AwaitingApproval"

    def test_unavailable_plan_approved_runs_without_a_plan_check(self) -> None:
        first = chain.plan(replace(observed(), spec=parse_spec(self.spec())))
        plan_hash = first.status["plan"]["hash"]
        decision = chain.plan(
            replace(
                observed(status=first.status, approved_plan=plan_hash),
                spec=parse_spec(self.spec()),
            )
        )
        assert decision.create_job is not None
        assert decision.create_job.expect_plan is None and decision.create_job.plan_salt == ""

    def test_knex_rehearses_in_init_containers_before_the_lock(self) -> None:
        shadow = {"shadowDatabase": {"urlSecretRef": {"name": "shadow", "key": "url"}}}
        raw = self.spec(tool="knex", image="shop:3", approval="None", verify=shadow)
        status = {"specHash": HASH, "appliedRevision": "20240101_a.js"}
        decision = chain.plan(replace(observed(status=status), spec=parse_spec(raw)))
        request = decision.create_job
        assert request is not None and request.database_at == "20240101_a.js"
        job = job_spec.build_job(
            naming.Owner("shop", "ns", "uid"), parse_spec(raw), HASH, request, "db", "img"
        )
        pod = job["spec"]["template"]["spec"]
        names = [c["name"] for c in pod["initContainers"]]
        assert names == [
            "rehearse-1-reset",
            "rehearse-2-upgrade",
            "rehearse-3-downgrade",
            "rehearse-4-upgrade",
            "lockstep-lock",
        ]
        steps = {c["name"]: c for c in pod["initContainers"]}
        assert steps["rehearse-1-reset"]["command"] == ["lockstep", "shadow-reset"]
        assert steps["rehearse-2-upgrade"]["image"] == "shop:3"
        assert steps["rehearse-2-upgrade"]["command"] == ["knex", "migrate:latest"]
        assert "20240101_a.js" in " ".join(steps["rehearse-3-downgrade"]["command"])
        for name in ("rehearse-2-upgrade", "rehearse-3-downgrade", "rehearse-4-upgrade"):
            (url,) = [e for e in steps[name]["env"] if e["name"] == "DATABASE_URL"]
            assert url["valueFrom"]["secretKeyRef"] == {"name": "shadow", "key": "url"}
        main_env = pod["containers"][0]["env"][0]
        assert main_env["valueFrom"]["secretKeyRef"] == {"name": "shop-db", "key": "url"}

    def test_django_first_run_rehearses_back_to_the_apps_zero(self) -> None:
        shadow = {"shadowDatabase": {"urlSecretRef": {"name": "shadow", "key": "url"}}}
        raw = self.spec(tool="django", target="shop:0002_orders", approval="None", verify=shadow)
        decision = chain.plan(replace(observed(), spec=parse_spec(raw)))
        assert decision.create_job is not None
        assert decision.create_job.database_at == "shop:zero"

    def test_rehearsal_in_an_image_is_refused_before_any_job(self) -> None:
        shadow = {"shadowDatabase": {"urlSecretRef": {"name": "shadow", "key": "url"}}}
        spec = parse_spec(self.spec(approval="None", verify=shadow))
        decision = chain.plan(replace(observed(), spec=spec))
        assert decision.create_job is None
        assert ready(decision)["reason"] == "RehearsalUnsupported"
        assert "flyway" in ready(decision)["message"]
        assert has_condition(decision, constants.STALLED)

    def test_a_tool_that_cannot_go_down_cannot_be_rehearsed(self) -> None:
        shadow = {"shadowDatabase": {"urlSecretRef": {"name": "shadow", "key": "url"}}}
        raw = self.spec(tool="prisma", approval="None", verify=shadow)
        decision = chain.plan(replace(observed(), spec=parse_spec(raw)))
        assert decision.create_job is None
        assert ready(decision)["reason"] == "RehearsalUnsupported"


class TestRehearsal:
    def test_failed_rehearsal_stalls_at_once(self) -> None:
        run = JobView(
            name="shop-a1b2c3d4",
            spec_hash=HASH[:8],
            attempt=0,
            state="Failed",
            finished_at=NOW,
        )
        outcome = Outcome(
            job=run.name,
            succeeded=False,
            reason="RehearsalFailed",
            message="rehearsal step 2 of 3 (downgrade) failed",
        )
        decision = chain.plan(observed({"approval": "None"}, jobs=(run,), outcome=outcome))
        assert decision.create_job is None
        assert ready(decision)["reason"] == "RehearsalFailed"
        assert "nextRetryAt" not in decision.status
        assert has_condition(decision, constants.STALLED)

    def test_shadow_database_reaches_only_the_runner_and_by_secret(self) -> None:
        shadow = {"shadowDatabase": {"urlSecretRef": {"name": "shadow", "key": "url"}}}
        spec = parse_spec({**SPEC, "verify": shadow})
        request = naming.JobRequest(attempt=0, target="head", plan_salt=SALT)
        job = job_spec.build_job(
            naming.Owner("shop", "ns", "uid"), spec, HASH, request, "db", "img"
        )
        container = job["spec"]["template"]["spec"]["containers"][0]
        assert "--shadow-url-env" in container["command"]
        env = {e["name"]: e for e in container["env"]}
        assert env["SHADOW_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
            "name": "shadow",
            "key": "url",
        }


class TestPlanJob:
    def test_plan_pod_is_read_only_and_holds_no_lock(self) -> None:
        spec = parse_spec(SPEC)
        request = naming.JobRequest(
            attempt=0, target="head", phase=constants.PHASE_PLAN, plan_salt=SALT
        )
        job = job_spec.build_job(
            naming.Owner("shop", "ns", "uid"), spec, HASH, request, "db", "img"
        )
        pod = job["spec"]["template"]["spec"]
        assert job["metadata"]["name"] == "shop-a1b2c3d4-p0"
        assert job["metadata"]["labels"][constants.LABEL_PHASE] == "plan"
        assert "initContainers" not in pod  # no lock sidecar
        command = pod["containers"][0]["command"]
        assert command[:2] == ["lockstep", "plan"]
        assert command[command.index("--salt") + 1] == SALT
        assert pod["automountServiceAccountToken"] is False


class TestWhichJobToRecord:
    def test_only_the_newest_plan_job_is_ever_recorded(self) -> None:
        from lockstep.controller.outcome import unrecorded_finished_job

        newest = plan_job(attempt=1)
        status = {"specHash": HASH, "plan": {**stored(DESTRUCTIVE_PLAN), "job": newest.name}}
        seen = observed(status=status, jobs=(plan_job(attempt=0), newest))
        assert unrecorded_finished_job(seen) is None

    def test_a_finished_run_after_its_plan_is_recorded(self) -> None:
        from lockstep.controller.outcome import unrecorded_finished_job

        run = JobView("shop-a1b2c3d4", HASH[:8], 0, "Succeeded", finished_at=NOW)
        status = {"specHash": HASH, "plan": stored(DESTRUCTIVE_PLAN)}
        seen = observed(status=status, jobs=(plan_job(), run))
        assert unrecorded_finished_job(seen) == run


def test_plan_changed_with_the_runners_fresh_plan_asks_for_that_plan() -> None:
    run = JobView("shop-a1b2c3d4", HASH[:8], 0, "Failed", finished_at=NOW - timedelta(seconds=1))
    fresh = {**DESTRUCTIVE_PLAN, "hash": "abababababababab"}
    outcome = Outcome(
        job=run.name, succeeded=False, reason="PlanChanged", message="changed", plan=fresh
    )
    status = {"specHash": HASH, "plan": stored(DESTRUCTIVE_PLAN)}
    decision = chain.plan(observed(status=status, jobs=(plan_job(), run), outcome=outcome))
    assert decision.status["plan"]["hash"] == "abababababababab"
    assert not decision.status["plan"].get("stale")
    later = chain.plan(
        observed(
            status={**decision.status, "nextRetryAt": None},
            jobs=(plan_job(), run),
            approved_plan=DESTRUCTIVE_PLAN["hash"],
        )
    )
    assert later.create_job is None
    assert ready(later)["reason"] == "AwaitingApproval"
    assert "abababababababab" in ready(later)["message"]


def test_a_failed_rehearsal_step_is_named_with_its_own_words() -> None:
    from lockstep.controller import cluster_facts

    pod = {
        "spec": {
            "initContainers": [
                {"name": "rehearse-1-reset", "command": ["lockstep", "shadow-reset"]},
                {"name": "rehearse-2-upgrade", "command": ["knex", "migrate:latest"]},
                {"name": "rehearse-3-downgrade", "command": ["knex", "migrate:rollback"]},
                {"name": "lockstep-lock", "command": ["lockstep", "lock"]},
            ]
        },
        "status": {
            "initContainerStatuses": [
                {"name": "rehearse-1-reset", "state": {"terminated": {"exitCode": 0}}},
                {
                    "name": "rehearse-2-upgrade",
                    "state": {"terminated": {"exitCode": 0, "message": "Batch 1 run"}},
                },
                {
                    "name": "rehearse-3-downgrade",
                    "state": {
                        "terminated": {"exitCode": 1, "message": 'relation "cart" does not exist'}
                    },
                },
            ]
        },
    }
    failure = cluster_facts.failed_rehearsal_step(pod)
    assert failure is not None
    assert (failure.step, failure.steps, failure.exit_code) == (3, 3, 1)
    text = failure.describe()
    assert text.startswith("rehearsal step 3 of 3 (rehearse-3-downgrade: knex migrate:rollback)")
    assert 'relation "cart" does not exist' in text
    assert cluster_facts.failed_rehearsal_step({"status": {}}) is None


def test_an_upgrade_plan_never_approves_a_rollback() -> None:
    """Alembic: the upgrade ran as a no-op (TargetBehind); the rollback needs its own plan."""
    upgrade_plan = {**stored(ADDITIVE_PLAN), "direction": "Upgrade"}
    behind = JobView("shop-a1b2c3d4", HASH[:8], 0, "Failed", finished_at=NOW)
    status = {
        "specHash": HASH,
        "plan": upgrade_plan,
        "appliedRevision": "2",
        "lastRun": {"job": behind.name, "reason": "TargetBehind", "specHash": HASH[:8]},
        "history": [{"job": behind.name}],
    }
    decision = chain.plan(
        observed({"downgrade": "Allow", "target": "1"}, status=status, jobs=(plan_job(), behind))
    )
    request = decision.create_job
    assert request is not None and request.is_plan and request.downgrade
    assert decision.status["plan"]["stale"] is True


def test_a_tools_plan_render_does_not_carry_the_migration_tag() -> None:
    """The fence ends tagged backends and a run refuses beside one: a plan pod is no migration
    (a user's env.py may connect even when Alembic prints SQL offline)."""
    spec = parse_spec(
        {
            "database": SPEC["database"],
            "tool": "alembic",
            "image": "acme/shop:1",
            "env": [{"name": "PGAPPNAME", "value": "shop"}],
        }
    )
    request = naming.JobRequest(
        attempt=0, target="head", phase=constants.PHASE_PLAN, plan_salt=SALT
    )
    job = job_spec.build_job(naming.Owner("shop", "ns", "uid"), spec, HASH, request, "db", "img")
    (render,) = job["spec"]["template"]["spec"]["initContainers"]
    assert render["name"] == "render"
    assert "PGAPPNAME" not in {e["name"] for e in render["env"]}
