"""The whole retrain → test → release chain (simulated workspace and Azure DevOps) on the Tables ledger: the same
end state as on SQLite, under duplicates, shuffling and faults, and one correlation id reads the chain back."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.ledger.sqlite import SqliteLedger
from shared.ledger.tables import TablesLedger
from shared.ops.simulate import Options, simulate
from shared.reactions import load_rules
from tests.conftest import ROOT
from tests.e2e.test_chain_simulated import end_state
from tests.fakes.azurite import Azurite
from tests.ledger.conftest import tables_settings

pytestmark = pytest.mark.azurite


def test_given_the_tables_ledger_when_the_chain_runs_calm_and_stormy_then_it_ends_as_on_sqlite(
    azurite: Azurite, tmp_path: Path
) -> None:
    rules = load_rules(ROOT / "reactions.yaml")
    on_sqlite = simulate(rules, SqliteLedger(tmp_path / "calm.sqlite3"), Options())
    calm_ledger = TablesLedger.from_settings(tables_settings(azurite))
    calm = simulate(rules, calm_ledger, Options())
    stormy = simulate(
        rules, TablesLedger.from_settings(tables_settings(azurite)),
        Options(duplicates=True, shuffle=True, fault_rate=0.2, seed=1),
    )

    assert end_state(calm.world) == end_state(on_sqlite.world)
    assert end_state(stormy.world) == end_state(on_sqlite.world)
    timeline = list(reversed(calm_ledger.audit(correlation_id=calm.correlation_id)))
    kinds = [e.event_type.rsplit(".", 1)[-1] for e in timeline if e.outcome == "acted"]
    assert kinds == ["RunStatusChanged", "ModelRegistered", "RunCompleted", "ReleaseAwaitingApproval",
                     "ReleaseApproved", "ReleaseDeployed"]
