"""The chain's release end told by Azure DevOps itself — through the REAL adapters, the shipped rules, the Tables
ledger on Azurite: once by service hooks, once (hooks lost) by the reconciler. No ModelDeployed is ever sent."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.outcomes import Outcome
from shared.reactions import load_rules
from tests.conftest import ROOT
from tests.e2e.live_world import CHAMPION_TAGS, MODEL, LiveChain
from tests.fakes.azurite import Azurite

pytestmark = pytest.mark.azurite


def chain_of(tmp_path: Path, azurite: Azurite, devops_cache_dir: Path, signals: str) -> LiveChain:
    return LiveChain(tmp_path, azurite, load_rules(ROOT / "reactions.yaml"), devops_cache_dir,
                     signals=signals)  # type: ignore[arg-type]


def assert_a_new_champion(chain: LiveChain) -> None:
    state = chain.end_state()
    assert state["models"]["1"] == {**CHAMPION_TAGS, "mlreactor.stage": "former-champion"}
    two = state["models"]["2"]
    assert two["mlreactor.stage"] == "champion" and two["mlreactor.correlation"] == chain.correlation_id
    assert two["mlreactor.release"].endswith("_build/results?buildId=101")
    assert "ModelDeployed" not in {kind for kind, _ in chain.outcomes}
    assert chain.teams_titles()[-1] == f"{MODEL}:2 deployed: new champion"
    record = chain.ledger.find_release("azure-devops-pipeline", chain.devops.org, "101")
    assert record is not None and record.state.value == "deployed"


def test_a_hook_driven_chain_ends_with_a_champion(azurite: Azurite, devops_cache_dir: Path, tmp_path: Path) -> None:
    """GIVEN the shipped rules WHEN the fake Azure DevOps reports the approval and the succeeded run by service hooks
    THEN the model mlreactor queued (from the ledger) becomes the champion, and the reviewer is on the model."""
    chain = chain_of(tmp_path, azurite, devops_cache_dir, "hooks")
    with chain.running():
        chain.run()
        hooks = [(kind, o.event_type, o.outcome) for kind, o in chain.outcomes if kind.startswith("hook ")]
        assert hooks == [
            ("hook ms.vss-pipelinechecks-events.approval-completed", "ReleaseApproved", Outcome.ACTED),
            ("hook ms.vss-pipelines.run-state-changed-event", "ReleaseDeployed", Outcome.ACTED),
        ], [(kind, o.outcome.value, o.reason) for kind, o in chain.outcomes]
        assert_a_new_champion(chain)
        assert chain.end_state()["models"]["2"]["mlreactor.approved_by"] == "Dana Reviewer"


def test_a_reconciler_driven_chain_ends_with_a_champion(
    azurite: Azurite, devops_cache_dir: Path, tmp_path: Path
) -> None:
    """GIVEN no service hook ever arrives WHEN the run succeeds THEN one reconciler pass reads it (one GET through
    the SDK) and closes the chain the same way."""
    chain = chain_of(tmp_path, azurite, devops_cache_dir, "reconciler")
    with chain.running():
        chain.run()
        (closing,) = [o for kind, o in chain.outcomes if kind == "reconciler"]
        assert (closing.event_type, closing.outcome) == ("ReleaseDeployed", Outcome.ACTED)
        assert len(chain.devops.calls("GET", "/pipelines/42/runs/101")) == 1
        assert_a_new_champion(chain)
