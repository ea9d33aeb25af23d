"""Fixtures for the Azure DevOps release tests: a local fake Azure DevOps, settings pointing at it, an engine whose
``queue_release`` adapter is the real one (real azure-devops SDK over loopback HTTP) on a real SQLite ledger."""

from __future__ import annotations

import base64
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from shared.actions import ActionKind
from shared.adapters.devops import DevOpsReleaseAdapter
from shared.engine import Engine
from shared.ledger.sqlite import SqliteLedger
from shared.outcomes import EventOutcome
from shared.reactions import Rules
from shared.settings import Settings
from tests.conftest import FakeClock, ScriptedAdapter, event, rules_from
from tests.fakes.azure_devops import FakeAzureDevOps

# The secret grep (test_secrets.py) runs GitHub's failure paths too.
from tests.github.conftest import app_key, fake_github, github_settings, make_github_release  # noqa: F401

#: Recognisable secrets: the leak tests grep every captured line for them.
PAT = "patSECRETdo-not-log-7f3a9c"
TOKEN = "eyJ0eXAiOiJKV1QiLCJTECRET-entra-token-do-not-log"
BASIC = "Basic " + base64.b64encode(f":{PAT}".encode()).decode()
BEARER = f"Bearer {TOKEN}"

PIPELINE_RULES = """
rules:
  - name: release-registered-model
    on: ModelRegistered
    do:
      - queue_release:
          project: mlops
          pipeline_id: 42
          branch: refs/heads/main
          environment: production
          parameters:
            approvers: ml-release-board
            smoke: true
          variables:
            deployTarget: aks-prod
          stages_to_skip: [canary]
"""

CLASSIC_RULES = """
rules:
  - name: release-registered-model
    on: ModelRegistered
    do:
      - queue_release:
          flavour: classic
          project: mlops
          definition_id: 7
          environment: Production
          description: "model {{ model.id }}"
          artifacts:
            - {alias: _model-package, version_id: "1234", version_name: "20261120.3"}
          variables:
            modelUri: "{{ model.asset }}"
"""


@dataclass
class Token:
    token: str
    expires_on: int


@dataclass
class FakeCredential:
    """An azure-identity-shaped credential (get_token(scope) -> token, expires_on) that counts its calls."""

    clock: FakeClock
    lifetime: int = 3600
    scopes: list[tuple[str, ...]] = field(default_factory=list)

    def get_token(self, *scopes: str) -> Token:
        self.scopes.append(scopes)
        return Token(TOKEN, int(self.clock.now().timestamp()) + self.lifetime)


@dataclass
class Release:
    """One engine with the real release adapter; ``deliver`` feeds a sample event through the whole engine."""

    engine: Engine
    ledger: SqliteLedger
    adapter: DevOpsReleaseAdapter
    fake: FakeAzureDevOps
    clock: FakeClock
    sleeps: list[float]

    def deliver(self, name: str = "model_registered", **changes: Any) -> EventOutcome:
        [outcome] = self.engine.handle_delivery([event(name, **changes)])
        return outcome


@pytest.fixture
def fake_devops(clock: FakeClock) -> Iterator[FakeAzureDevOps]:
    """A project set up as the README asks: ``production`` has an Approval check, the classic ``Production`` stage a
    person's pre-deployment approval. Tests about ungated targets take these away."""
    fake = FakeAzureDevOps(accepted_auth=(BASIC, BEARER), clock=clock.now).start()
    fake.add_environment("production", approvers=("ML Release Board",))
    fake.set_stage_approval(7, "Production", "ML Release Board")
    yield fake
    fake.stop()


@pytest.fixture(scope="session")
def devops_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One per test session: the SDK reads AZURE_DEVOPS_CACHE_DIR once, when it is first imported."""
    return tmp_path_factory.mktemp("azure-devops-cache")


@pytest.fixture
def devops_settings(
    fake_devops: FakeAzureDevOps, tmp_path: Path, devops_cache_dir: Path
) -> Callable[..., Settings]:
    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "devops_organization_url": fake_devops.organization_url,
            "devops_pat": PAT,
            "devops_auth": "pat",
            "devops_cache_dir": devops_cache_dir,
            "devops_timeout_seconds": 5.0,
            "state_dir": tmp_path,
        }
        values.update(overrides)
        return Settings(**values)

    return build


@pytest.fixture
def make_release(
    tmp_path: Path, clock: FakeClock, fake_devops: FakeAzureDevOps, devops_settings: Callable[..., Settings]
) -> Iterator[Callable[..., Release]]:
    ledgers: list[SqliteLedger] = []

    def build(
        rules: Rules | str = PIPELINE_RULES, *, ledger: SqliteLedger | None = None, credential: Any = None,
        **settings: Any,
    ) -> Release:
        ledger = ledger or SqliteLedger(tmp_path / "ledger.sqlite3")
        ledgers.append(ledger)
        sleeps: list[float] = []
        adapter = DevOpsReleaseAdapter(
            devops_settings(**settings), ledger, clock=clock, credential=credential, sleep=sleeps.append,
            rng=random.Random(7),
        )
        adapters: dict[ActionKind, Any] = {kind: ScriptedAdapter(kind) for kind in ActionKind}
        adapters[ActionKind.QUEUE_RELEASE] = adapter
        parsed = rules_from(rules) if isinstance(rules, str) else rules
        return Release(Engine(parsed, ledger, adapters, clock=clock), ledger, adapter, fake_devops, clock, sleeps)

    yield build
    for ledger in ledgers:
        ledger.close()
