"""The retrain → test → release chain through the REAL adapters, the shipped rules and the Tables ledger.

azure-ai-ml talks HTTPS to a local fake Azure ML, azure-devops to a local fake Azure DevOps, notifications go to local
Teams / Slack receivers, ``publish_event`` to a local Event Grid topic, and the ledger is Azure Tables on Azurite. The
adapters are built by ``build_adapters`` from live settings exactly as the Function App builds them; the rules are
the shipped ``reactions.yaml`` unchanged (its channels name app settings, which point at the local receivers here).
Every follow-up event is derived from what the fakes recorded (``live_world.LiveChain``).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from shared.outcomes import Outcome
from shared.reactions import Rules, load_rules
from tests.conftest import ROOT
from tests.e2e.live_world import CHAMPION_TAGS, MODEL, TEST_METRICS, WORKSPACE, Chaos, LiveChain, LoseFirstAnswers
from tests.fakes.azurite import Azurite

pytestmark = pytest.mark.azurite

SEEDS = range(10)
NO_RETRIES = {"azureml_retry_total": 0, "devops_retry_attempts": 0, "notify_retries": 0}


@dataclass
class Calm:
    chain: LiveChain
    state: dict[str, Any]
    jobs: dict[str, dict[str, Any]]  # purpose → the job as the fake Azure ML stored it
    job_puts: list[str]
    release_posts: int
    teams_titles: list[str]
    published: list[dict[str, Any]]


@pytest.fixture(scope="module")
def rules() -> Rules:
    return load_rules(ROOT / "reactions.yaml")


@pytest.fixture(scope="module")
def calm(
    azurite: Azurite, rules: Rules, devops_cache_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Calm]:
    """The chain once, every event delivered once, in order, nothing failing."""
    chain = LiveChain(tmp_path_factory.mktemp("calm"), azurite, rules, devops_cache_dir)
    with chain.running():
        chain.run()
        jobs = {job["properties"]["tags"]["mlreactor.purpose"]: job
                for job in (chain.aml.job(name) for name in chain.aml.jobs()) if job is not None}
        yield Calm(
            chain, chain.end_state(), jobs, [r.path.rsplit("/", 1)[1] for r in chain.aml.calls("PUT", "/jobs/")],
            len(chain.devops.calls("POST", "/pipelines/42/runs")), chain.teams_titles(),
            [event for post in chain.topic.requests for event in post.json()],
        )


def test_drift_becomes_one_retrain_one_test_one_release_and_a_new_champion(calm: Calm) -> None:
    """GIVEN the shipped rules, champion credit-fraud:1 and a model-monitor drift signal
    WHEN the chain runs through the real Azure ML and Azure DevOps adapters and a person approves the release
    THEN one retraining job and one offline-test job were submitted, one pipeline run was queued for version 2,
    version 2 carries the chain's tags and is the champion, version 1 is the former champion."""
    correlation = calm.chain.correlation_id
    assert calm.state["jobs"] == [("offline-test", "Completed", correlation), ("retrain", "Completed", correlation)]
    assert len(calm.job_puts) == 2 and len(set(calm.job_puts)) == 2, "each job was PUT once"
    retrain, test = calm.jobs["retrain"]["properties"], calm.jobs["offline-test"]["properties"]
    assert retrain["experimentName"] == "mlreactor-retrain"
    assert retrain["inputs"]["correlation_id"]["value"] == correlation  # what the register step tags the model with
    assert retrain["inputs"]["monitor"]["value"] == "credit_card_fraud_monitor"
    assert retrain["tags"]["mlreactor.reaction"] == "retrain-on-drift"
    assert test["experimentName"] == "mlreactor-offline-test"
    assert test["tags"]["mlreactor.model_name"] == MODEL and test["tags"]["mlreactor.model_version"] == "2"
    assert test["inputs"]["model"]["uri"].endswith(f"/models/{MODEL}/versions/2")

    assert calm.release_posts == 1
    assert calm.state["releases"] == [(MODEL, "2", correlation, "completed")]

    models = calm.state["models"]
    assert models["1"] == {**CHAMPION_TAGS, "mlreactor.stage": "former-champion"}
    two = models["2"]
    assert {k: two[k] for k in ("mlreactor.stage", "mlreactor.verdict", "mlreactor.correlation",
                                "mlreactor.deployed_to")} == {
        "mlreactor.stage": "champion", "mlreactor.verdict": "challenger", "mlreactor.correlation": correlation,
        "mlreactor.deployed_to": "credit-fraud-online"}
    assert {k: two[k] for k in TEST_METRICS} == TEST_METRICS  # the gate's numbers, copied from the test run
    assert two["mlreactor.gate"].startswith("passed: auc 0.91 >= 0.8")
    assert sorted(models) == ["1", "2"]


def test_ops_are_told_each_step_and_the_chain_is_published(calm: Calm) -> None:
    """GIVEN the calm chain WHEN Ops read their Teams channel THEN they saw drift, the passed offline test, the
    release awaiting approval and the new champion — once each, in that order; Slack (failed runs only) saw nothing;
    the Event Grid topic got RetrainStarted and ReleaseQueued, both with the chain's correlation id."""
    assert calm.teams_titles == [
        "Drift detected by credit\\_card\\_fraud\\_monitor: retraining started",
        f"Offline test passed: {MODEL}:2",
        f"Release of {MODEL}:2 queued: awaiting approval",
        f"{MODEL}:2 deployed to credit-fraud-online: new champion",
    ]
    release_card = next(text for text in calm.state["notifications"]["teams"] if "queued: awaiting" in text)
    assert "awaits approval in environment production" in release_card
    assert "/contoso/mlops/\\_build/results?buildId=" in release_card  # the run's link in Azure DevOps
    assert calm.state["notifications"]["slack"] == []
    assert [(e["type"], e["data"]["correlationId"]) for e in calm.published] == [
        ("mlreactor.RetrainStarted", calm.chain.correlation_id), ("mlreactor.ReleaseQueued", calm.chain.correlation_id)]
    assert len(calm.state["published"]) == 2 and len({e["id"] for e in calm.published}) == 2


def test_the_audit_timeline_links_every_step_by_one_correlation_id(calm: Calm) -> None:
    """GIVEN the calm chain WHEN the Tables ledger's audit is read for the drift event's id THEN it lists the four
    acted steps in order, each with the rule that fired, and every action of the chain recorded as done."""
    assert calm.state["timeline"] == [
        ("RunStatusChanged", "e2e-0001", ("retrain-on-drift",)),
        ("ModelRegistered", "e2e-0003", ("test-new-model",)),
        ("RunCompleted", "e2e-0004", ("gate-and-release",)),
        ("ModelDeployed", "e2e-0005", ("promote-deployed-model",)),
    ]
    entries = calm.chain.ledger.audit(correlation_id=calm.chain.correlation_id)
    acted = [e for e in entries if e.outcome == Outcome.ACTED]
    kinds = Counter(a["kind"] for e in acted for a in e.actions if a["status"] == "done")
    assert kinds == Counter({"tag_model": 3, "notify": 4, "run_pipeline": 2, "publish_event": 2, "quality_gate": 1,
                             "queue_release": 1})
    assert all(e.source == WORKSPACE for e in entries)


def test_every_event_twice_shuffled_with_20_percent_faults_ends_in_the_same_state(
    calm: Calm, azurite: Azurite, rules: Rules, devops_cache_dir: Path, tmp_path: Path
) -> None:
    """GIVEN the same chain, every event delivered twice and shuffled within each batch (Event Grid neither orders
    nor deduplicates), and ~20 % of calls to Azure ML, Azure DevOps, the webhooks, the Event Grid topic and the
    ledger's Tables endpoint failing — half refused before any effect, half lost after it —
    WHEN failed deliveries are redelivered until acted on or seen as duplicates, for several fault seeds
    THEN jobs, model tags per version, releases, what Ops read, what was published and the audit timeline's acted
    steps are identical to the calm run."""
    injected: Counter[str] = Counter()
    calls = redelivered = 0
    for seed in SEEDS:
        chaos = Chaos(0.2, seed)
        stormy = LiveChain(tmp_path / f"storm{seed}", azurite, rules, devops_cache_dir, chaos=chaos,
                           duplicates=True, shuffle=True, seed=seed)
        with stormy.running():
            stormy.run()
            assert stormy.end_state() == calm.state, f"seed {seed}: {dict(chaos.injected)}"
            assert not [o for _, o in stormy.outcomes if o.outcome is Outcome.QUARANTINED], f"seed {seed}"
        injected += chaos.injected
        calls += chaos.calls
        redelivered += sum(o.outcome is Outcome.FAILED for _, o in stormy.outcomes)
    assert 0.12 < sum(injected.values()) / calls < 0.28, f"{sum(injected.values())} faults in {calls} calls"
    # Every service met faults, and both kinds were injected. Which kinds a service meets depends on how the seeded
    # draws fall on its calls (the webhooks get ~50 calls over the seeds; issue 17's fewer ledger calls left them
    # none lost after the effect): that kind is made for every first call by the test below.
    for service in ("azureml", "devops", "webhook", "eventgrid", "tables"):
        assert injected[f"{service} before"] + injected[f"{service} after"], (service, dict(injected))
    assert all(sum(n for k, n in injected.items() if k.endswith(kind)) for kind in ("before", "after"))
    # about one redelivery per seed: the ledger makes few calls per event (issue 17), so fewer faults land on it
    assert redelivered >= len(SEEDS) // 2, "faults reached the engine and deliveries were redelivered"


def test_every_first_answer_lost_after_its_effect_ends_in_the_same_state(
    calm: Calm, azurite: Azurite, rules: Rules, devops_cache_dir: Path, tmp_path: Path
) -> None:
    """GIVEN the answer to the first call of every job PUT, model-tag POST, pipeline-run POST, webhook post, Event
    Grid publish and ledger write (insert, batch, conditional update) is lost after the service acted on it, and the
    adapters make no in-process retries, so their losses reach the engine and the delivery is redelivered (the
    adapters then run with ``resumed``)
    WHEN the chain runs
    THEN nothing is created twice: the same two jobs, one pipeline run, the same tags, what Ops read and what was
    published, and the same audit timeline as the calm run."""
    chaos = LoseFirstAnswers()
    chain = LiveChain(tmp_path, azurite, rules, devops_cache_dir, chaos=chaos, overrides=NO_RETRIES)
    with chain.running():
        chain.run()
        assert chain.end_state() == calm.state
        job_puts = [r.path for r in chain.aml.calls("PUT", "/jobs/")]
    lost = [(service, call) for service, _, call in chaos.faults]
    for service, call in [
        ("azureml", r"^PUT .*/jobs/mlreactor-retrain-"), ("azureml", r"^PUT .*/jobs/mlreactor-offline-test-"),
        ("azureml", r"^POST /mlflow/v2\.0/.*/model-versions/set-tag$"), ("devops", r"^POST .*/pipelines/42/runs$"),
        ("webhook", r"^POST /workflows/"), ("eventgrid", r"^POST /api/events$"),
        ("tables", r"^POST .*/\$batch$"), ("tables", r"^PATCH .*ledger\(PartitionKey="),
    ]:
        assert any(s == service and re.search(call, c) for s, c in lost), f"no lost answer to {service} {call}"
    assert len(job_puts) == len(set(job_puts)) == 2, "the resumed action found the job its lost PUT created"
    # A lost job PUT answer is settled in its own delivery (the job is read by name); the other losses are redelivered.
    assert sum(o.outcome is Outcome.FAILED for _, o in chain.outcomes) >= 3, "the losses were redelivered"
