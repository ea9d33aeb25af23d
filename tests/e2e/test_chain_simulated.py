"""The retrain → test → release chain through the real engine, rules and ledger, against the simulated workspace.

(The same chain through the real Azure ML and Azure DevOps adapters, local receivers and Azurite is in
``test_chain_live.py`` when those are available.)
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shared.actions import ActionKind, ActionResult, PlannedAction
from shared.adapters.gate import GateAdapter
from shared.engine import Engine
from shared.errors import TransientError
from shared.ledger.sqlite import SqliteLedger
from shared.ops.simulate import MODEL, Options, SimAdapter, SimClock, World, simulate
from shared.outcomes import Outcome
from shared.reactions import Rules, load_rules
from tests.conftest import ROOT


@pytest.fixture
def rules() -> Rules:
    return load_rules(ROOT / "reactions.yaml")


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[SqliteLedger]:
    ledger = SqliteLedger(tmp_path / "ledger.sqlite3")
    yield ledger
    ledger.close()


def end_state(world: World) -> dict[str, object]:
    return {
        "jobs": sorted((j.purpose, j.status) for j in world.jobs.values()),
        "models": {f"{n}:{v}": {k: t for k, t in tags.items() if k != "source_job"}
                   for (n, v), tags in sorted(world.models.items())},
        "releases": [(r.environment, r.status, r.parameters["modelVersion"]) for r in world.releases],
        "notifications": sorted(set(world.notifications)),
        "published": sorted(set(world.published)),
    }


def test_drift_becomes_a_tested_release_waiting_for_approval_then_a_champion(
    rules: Rules, ledger: SqliteLedger
) -> None:
    result = simulate(rules, ledger, Options())
    world = result.world
    assert sorted((j.purpose, j.status) for j in world.jobs.values()) == [
        ("offline-test", "Completed"), ("retrain", "Completed")]
    assert [(r.environment, r.parameters["modelVersion"]) for r in world.releases] == [("production", "2")]
    assert world.models[(MODEL, "2")]["mlreactor.stage"] == "champion"
    assert world.models[(MODEL, "2")]["mlreactor.verdict"] == "challenger"
    assert world.models[(MODEL, "2")]["mlreactor.metric.auc"] == "0.91"
    assert world.models[(MODEL, "1")]["mlreactor.stage"] == "former-champion"
    assert [m.split(":")[0] for m in world.notifications] == [
        "drift_detected", "offline_test", "release_queued", "generic", "generic"]
    assert world.notifications[3:] == ["generic: credit-fraud:2 awaits approval in production",
                                       "generic: credit-fraud:2 deployed: new champion"]
    assert "challenger" in world.notifications[1] and "vs champion 1" in world.notifications[1]
    assert world.published == ["mlreactor.RetrainStarted", "mlreactor.ReleaseQueued"]


def test_one_correlation_id_links_every_step_of_the_chain(rules: Rules, ledger: SqliteLedger) -> None:
    result = simulate(rules, ledger, Options())
    timeline = list(reversed(ledger.audit(correlation_id=result.correlation_id)))
    kinds = [e.event_type.rsplit(".", 1)[-1] for e in timeline if e.outcome == "acted"]
    assert kinds == ["RunStatusChanged", "ModelRegistered", "RunCompleted", "ReleaseAwaitingApproval",
                     "ReleaseApproved", "ReleaseDeployed"]  # told by Azure DevOps' hooks: no ModelDeployed at all
    jobs = result.world.jobs.values()
    assert {j.tags["mlreactor.correlation"] for j in jobs} == {result.correlation_id}
    assert result.world.releases[0].parameters["correlationId"] == result.correlation_id
    assert result.world.models[(MODEL, "2")]["mlreactor.correlation"] == result.correlation_id


def test_a_candidate_that_fails_the_gate_is_rejected_and_never_released(rules: Rules, ledger: SqliteLedger) -> None:
    world = simulate(rules, ledger, Options(fail_gate=True)).world
    assert world.releases == []
    assert world.models[(MODEL, "2")]["mlreactor.verdict"] == "rejected"
    assert "FAILED" in world.models[(MODEL, "2")]["mlreactor.gate"]
    assert world.models[(MODEL, "1")]["mlreactor.stage"] == "champion"
    assert world.published == ["mlreactor.RetrainStarted", "mlreactor.GateFailed"]


@pytest.mark.parametrize("run", ["retrain", "test"])
def test_a_failed_chain_run_marks_the_chain_failed_and_tells_ops(
    rules: Rules, ledger: SqliteLedger, run: str
) -> None:
    world = simulate(rules, ledger, Options(fail_run=run)).world  # type: ignore[arg-type]
    failed = [j for j in world.jobs.values() if j.status == "Failed"]
    assert len(failed) == 1 and failed[0].tags["mlreactor.chain"] == "failed"
    assert world.releases == []
    assert world.notifications[-1].startswith("chain_failed")
    assert "mlreactor.ChainFailed" in world.published
    if run == "test":
        assert world.models[(MODEL, "2")]["mlreactor.stage"] == "rejected"


def test_every_event_twice_shuffled_with_20_percent_faults_ends_in_the_same_state(
    rules: Rules, tmp_path: Path
) -> None:
    calm = simulate(rules, SqliteLedger(tmp_path / "calm.sqlite3"), Options())
    retried = 0
    for seed in range(5):
        stormy = simulate(rules, SqliteLedger(tmp_path / f"storm{seed}.sqlite3"),
                          Options(duplicates=True, shuffle=True, fault_rate=0.2, seed=seed))
        assert end_state(stormy.world) == end_state(calm.world), f"seed {seed}"
        retried += sum(o.outcome is Outcome.FAILED for _, o in stormy.outcomes)
    assert retried > 5, "faults were injected and redelivered"


def deliver(engine: Engine, world: World) -> list[Outcome]:
    batch, world.pending = world.pending, []
    outcomes = []
    for raw in batch:
        world.clock.tick()
        (outcome,) = engine.handle_delivery(json.dumps([raw]))
        outcomes.append(outcome.outcome)
    return outcomes


Chain = tuple[Engine, World, dict[ActionKind, SimAdapter]]


@pytest.fixture
def chain(rules: Rules, ledger: SqliteLedger) -> Chain:
    clock = SimClock(datetime(2026, 11, 24, 12, 0, tzinfo=UTC))
    world = World(rules.spec.allowed_workspaces[0], clock, Options())
    world.models[(MODEL, "1")] = {"mlreactor.stage": "champion", "mlreactor.metric.auc": "0.88",
                                  "mlreactor.metric.latency_ms": "30"}
    adapters = {kind: SimAdapter(world, kind, random.Random(0)) for kind in ActionKind}
    engine = Engine(rules, ledger, {**adapters, ActionKind.QUALITY_GATE: GateAdapter(world, clock)}, clock=clock)
    return engine, world, adapters


def registered(world: World, version: str, event_id: str) -> dict[str, object]:
    world.models[(MODEL, version)] = {"mlreactor.correlation": "chain-x"}
    return {"id": event_id, "topic": world.workspace, "subject": f"models/{MODEL}:{version}",
            "eventType": "Microsoft.MachineLearningServices.ModelRegistered",
            "eventTime": world.clock.now().isoformat(),
            "data": {"modelName": MODEL, "modelVersion": version, "modelTags": {"mlreactor.correlation": "chain-x"}}}


class FailOnce(SimAdapter):
    """Fails its first call transiently, as Azure ML does under load."""

    failed = False

    def execute(self, action: PlannedAction) -> ActionResult:
        if not self.failed:
            self.failed = True
            raise TransientError("Azure ML 503")
        return super().execute(action)


def test_an_offline_test_result_before_its_model_is_marked_waits_then_acts_once(chain: Chain) -> None:
    """GIVEN the candidate tag failed transiently while the offline test launched anyway,
    WHEN the test's RunCompleted arrives before the ModelRegistered is redelivered,
    THEN the gate waits (redelivery), and once the tag lands the chain goes on — one test, one release."""
    engine, world, adapters = chain
    engine.adapters[ActionKind.TAG_MODEL] = FailOnce(world, ActionKind.TAG_MODEL, adapters[ActionKind.TAG_MODEL].rng)
    registration = registered(world, "2", "reg-1")
    world.pending.append(registration)
    assert deliver(engine, world) == [Outcome.FAILED]
    (test_job,) = world.jobs.values()
    world.finish_job(test_job)
    test_completed = world.pending[0]
    assert deliver(engine, world) == [Outcome.FAILED], "the gate waits: the model is not marked as a candidate yet"
    assert world.releases == []

    world.pending = [registration]  # Event Grid redelivers the registration ...
    assert deliver(engine, world) == [Outcome.ACTED]
    world.pending = [test_completed]  # ... and later the deferred test result
    assert deliver(engine, world) == [Outcome.ACTED]

    assert [j.purpose for j in world.jobs.values()] == ["offline-test"]
    assert len(world.releases) == 1
    assert world.models[(MODEL, "2")]["mlreactor.verdict"] == "challenger"


def test_a_duplicate_registration_after_the_release_was_queued_tests_and_releases_nothing_new(
    rules: Rules, ledger: SqliteLedger
) -> None:
    world = simulate(rules, ledger, Options()).world
    jobs, releases = dict(world.jobs), list(world.releases)
    engine = Engine(rules, ledger, {k: SimAdapter(world, k, random.Random(0)) for k in ActionKind},
                    clock=world.clock)
    world.pending = [registered(world, "2", "reg-again")]
    world.models[(MODEL, "2")]["mlreactor.stage"] = "champion"
    (outcome,) = [engine.handle_delivery(json.dumps([raw]))[0] for raw in world.pending]
    assert outcome.outcome is Outcome.IGNORED
    assert "test-new-model (already fired once for credit-fraud:2)" in outcome.reason
    assert world.jobs == jobs and world.releases == releases


def test_a_deployment_the_chain_never_saw_still_promotes_the_champion(rules: Rules, ledger: SqliteLedger) -> None:
    world = simulate(rules, ledger, Options()).world
    world.models[(MODEL, "7")] = {}
    world.emit("ModelDeployed", "endpoints/manual", {"serviceName": "manual", "modelIds": f"{MODEL}:7"})
    engine = Engine(rules, ledger, {k: SimAdapter(world, k, random.Random(0)) for k in ActionKind},
                    clock=world.clock)
    (outcome,) = engine.handle_delivery(json.dumps(world.pending))
    assert outcome.outcome is Outcome.ACTED
    assert outcome.correlation_id == world.pending[0]["id"], "a deployment outside any chain starts its own"
    assert world.models[(MODEL, "7")]["mlreactor.stage"] == "champion"
    assert world.models[(MODEL, "2")]["mlreactor.stage"] == "former-champion"


def test_a_stale_drift_signal_after_retraining_started_starts_no_second_retrain(
    rules: Rules, ledger: SqliteLedger
) -> None:
    result = simulate(rules, ledger, Options())
    world = result.world
    first = world.jobs.copy()
    world.emit("RunStatusChanged", "experiments/monitor/runs/late", {
        "experimentId": "monitor", "experimentName": "credit_card_fraud_monitor", "runId": "late",
        "runStatus": "Completed", "runTags": {"azureml_modelmonitor_threshold_breached":
                                              "The signal 'credit_card_fraud_monitor_data_drift' has failed"}})
    engine = Engine(rules, ledger, {k: SimAdapter(world, k, random.Random(0)) for k in ActionKind},
                    clock=world.clock)
    (outcome,) = engine.handle_delivery(json.dumps(world.pending))
    assert outcome.outcome is Outcome.IGNORED and "retrain-on-drift (once within 6h)" in outcome.reason
    assert world.jobs == first


# the release end of the chain, told by the release target (shared/releases/) --------------------------------------
def acted_kinds(ledger: SqliteLedger, correlation_id: str) -> list[str]:
    timeline = list(reversed(ledger.audit(correlation_id=correlation_id)))
    return [e.event_type.rsplit(".", 1)[-1] for e in timeline if e.outcome == "acted"]


def test_the_chain_reaches_a_champion_through_release_deployed_without_any_model_deployed(
    rules: Rules, ledger: SqliteLedger
) -> None:
    result = simulate(rules, ledger, Options())
    kinds = acted_kinds(ledger, result.correlation_id)
    assert kinds[-1] == "ReleaseDeployed" and "ModelDeployed" not in {e.event_type.rsplit(".", 1)[-1]
                                                                      for e in ledger.audit(limit=1000)}
    assert result.world.models[(MODEL, "2")]["mlreactor.stage"] == "champion"
    assert result.world.models[(MODEL, "1")]["mlreactor.stage"] == "former-champion"
    assert result.world.models[(MODEL, "2")]["mlreactor.approved_by"] == "Dana Reviewer"
    hooks = [(kind, o.outcome) for kind, o in result.outcomes if kind.startswith("hook ")]
    assert [k for k, _ in hooks] == ["hook approval-pending", "hook approval-completed", "hook run-state-changed-event"]


def test_a_reviewer_rejects_the_release(rules: Rules, ledger: SqliteLedger) -> None:
    result = simulate(rules, ledger, Options(reject=True))
    tags = result.world.models[(MODEL, "2")]
    assert (tags["mlreactor.stage"], tags["mlreactor.verdict"]) == ("rejected", "rejected-by-reviewer")
    assert (tags["mlreactor.reviewer"], tags["mlreactor.review_comment"]) == (
        "Dana Reviewer", "AUC gain too small for a Friday release")
    assert result.world.models[(MODEL, "1")]["mlreactor.stage"] == "champion"  # the champion stays
    assert acted_kinds(ledger, result.correlation_id)[-1] == "ReleaseRejected"
    assert result.world.notifications[-1] == "generic: Release of credit-fraud:2 rejected by Dana Reviewer"
    # the run then fails too; the release already ended, so that is no second ending
    (late,) = [o for kind, o in result.outcomes if kind == "hook run-state-changed-event"]
    assert (late.outcome, late.reason) == (Outcome.IGNORED, "run completed: failed: the release is already rejected")


def test_the_approval_expires_after_one_reminder(rules: Rules, ledger: SqliteLedger) -> None:
    result = simulate(rules, ledger, Options(expire=True))
    assert acted_kinds(ledger, result.correlation_id)[-3:] == [
        "ReleaseAwaitingApproval", "ReleaseAwaitingApproval", "ReleaseExpired"]  # the second is the 48 h reminder
    tags = result.world.models[(MODEL, "2")]
    assert (tags["mlreactor.stage"], tags["mlreactor.verdict"]) == ("release-expired", "approval-expired")
    assert result.world.notifications[-2:] == ["generic: Reminder: credit-fraud:2 still awaits approval",
                                               "generic: Approval of credit-fraud:2 expired"]


def test_hooks_lost_the_reconciler_closes_the_chain(rules: Rules, ledger: SqliteLedger) -> None:
    result = simulate(rules, ledger, Options(lose_hooks=True))
    assert [kind for kind, _ in result.outcomes if kind.startswith("hook")] == []
    (closing,) = [o for kind, o in result.outcomes if kind == "reconciler"]
    assert (closing.event_type, closing.outcome) == ("ReleaseDeployed", Outcome.ACTED)
    assert result.world.models[(MODEL, "2")]["mlreactor.stage"] == "champion"
    assert result.world.models[(MODEL, "1")]["mlreactor.stage"] == "former-champion"


def test_hooks_twice_shuffled_with_faults_still_end_the_release_once(rules: Rules, tmp_path: Path) -> None:
    for seed in range(3):
        ledger = SqliteLedger(tmp_path / f"storm{seed}.sqlite3")
        result = simulate(rules, ledger, Options(duplicates=True, shuffle=True, fault_rate=0.2, seed=seed))
        ended = [e for e in ledger.audit(limit=1000) if e.event_type == "ReleaseDeployed" and e.outcome == "acted"]
        assert len(ended) == 1, f"seed {seed}"
        assert result.world.models[(MODEL, "2")]["mlreactor.stage"] == "champion"
        ledger.close()
