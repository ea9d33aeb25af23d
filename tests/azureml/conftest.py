"""Fixtures for the Azure ML contract tests: the real azure-ai-ml against a local HTTPS fake of Azure ML."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.actions import ActionKind, PlannedAction
from shared.adapters.azureml import AzureMLAdapter, AzureMLState, WorkspaceClients
from shared.adapters.azureml.timing import Timing
from shared.adapters.dryrun import DryRunAdapter
from shared.engine import Engine
from shared.events import AzureMLEvent, parse_event
from shared.ledger.sqlite import SqliteLedger
from shared.reactions import Rules
from shared.settings import Settings
from tests.conftest import ROOT, FakeClock, rules_from
from tests.fakes.azureml import FakeAzureML, FakeCredential

SUB = "00000000-0000-0000-0000-000000000000"
ARM = f"/subscriptions/{SUB}/resourceGroups/rg-mlops/providers/Microsoft.MachineLearningServices/workspaces/mlw-prod"
HISTORY = f"/history/v1.0{ARM}"


def azureml_settings(**overrides: Any) -> Settings:
    """Tight limits so fault tests finish in seconds; the same knobs production sets."""
    values: dict[str, Any] = {
        "dry_run": False, "azureml_retry_total": 2, "azureml_timeout_seconds": 1.5,
        "azureml_action_budget_seconds": 6.0, "azureml_tag_settle_seconds": 0.05, **overrides,
    }
    return Settings(**values)


#: The smallest offline-test rule: one job from pipelines/offline-test.yml on the registered model.
OFFLINE_TEST_RULES = """
rules:
  - name: test-new-model
    on: ModelRegistered
    do:
      - run_pipeline:
          purpose: offline-test
          job_yaml: pipelines/offline-test.yml
          inputs:
            model: "{{ model.asset }}"
"""

@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAzureML]:
    server = FakeAzureML(tmp_path / "tls").start()
    monkeypatch.setenv("AZUREML_DEV_URL_MFE", server.base_url)  # the SDK's own switch for its ARM host
    yield server
    server.stop()


@pytest.fixture
def make_clients(fake: FakeAzureML) -> Callable[..., WorkspaceClients]:
    def build(timing: Timing | None = None, **overrides: Any) -> WorkspaceClients:
        return WorkspaceClients(
            azureml_settings(**overrides), credential=FakeCredential(), connection_verify=str(fake.cert.cert_path),
            timing=timing,
        )

    return build


@pytest.fixture
def adapter(make_clients: Callable[..., WorkspaceClients]) -> AzureMLAdapter:
    """The live adapter; job YAMLs resolve against the project root (where reactions.yaml and pipelines/ live)."""
    return AzureMLAdapter(make_clients(), ROOT)


@pytest.fixture
def state(adapter: AzureMLAdapter) -> AzureMLState:
    return AzureMLState(adapter.clients)


def engine_with(rules: Rules, adapter: AzureMLAdapter, ledger: SqliteLedger, clock: FakeClock) -> Engine:
    adapters: dict[ActionKind, Any] = {kind: DryRunAdapter(kind) for kind in ActionKind}
    adapters.update(dict.fromkeys((ActionKind.RUN_PIPELINE, ActionKind.TAG_MODEL, ActionKind.TAG_RUN), adapter))
    return Engine(rules, ledger, adapters, clock=clock)


def planned(rules_text: str, event: dict[str, Any], index: int = 0) -> PlannedAction:
    """The ``index``-th action the rules plan for ``event`` (rendered exactly as the engine renders it)."""
    rules = rules_from(rules_text)
    typed: AzureMLEvent = parse_event(event)
    plan = Engine(rules, None, {}).plan(typed)  # type: ignore[arg-type]  # plan() touches neither ledger nor adapters
    assert not plan.errors, plan.errors
    return plan.actions[index]
