"""Fixtures for the GitHub Actions release tests: a local fake GitHub, a real RSA key pair for the App, settings
pointing at the fake, and an engine whose ``queue_release`` adapter is the real GitHub one on a real SQLite ledger."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from shared.actions import ActionKind
from shared.adapters.github import GitHubReleaseAdapter
from shared.engine import Engine
from shared.ledger.sqlite import SqliteLedger
from shared.outcomes import EventOutcome
from shared.reactions import Rules
from shared.settings import Settings
from tests.conftest import FakeClock, ScriptedAdapter, event, rules_from
from tests.fakes.github import FakeGitHub

#: Recognisable secrets: the leak tests grep every captured line for them.
FINE_GRAINED = "github_pat_11SECRETdo-not-log-0fa1"
REPOSITORY = "contoso/ml-release"
DISPATCHES = f"/repos/{REPOSITORY}/actions/workflows/release-model.yml/dispatches"
RUNS = f"/repos/{REPOSITORY}/actions/workflows/release-model.yml/runs"
TOKENS = "/app/installations/4242/access_tokens"

GITHUB_RULES = """
rules:
  - name: release-registered-model
    on: ModelRegistered
    do:
      - queue_release:
          flavour: github
          repository: contoso/ml-release
          workflow: release-model.yml
          branch: main
          environment: production
"""


@dataclass(frozen=True)
class AppKey:
    private_pem: str
    public_pem: str


@pytest.fixture(scope="session")
def app_key() -> AppKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return AppKey(private, public)


@dataclass
class GitHubRelease:
    engine: Engine
    ledger: SqliteLedger
    adapter: GitHubReleaseAdapter
    fake: FakeGitHub
    clock: FakeClock
    sleeps: list[float]

    def deliver(self, name: str = "model_registered", **changes: Any) -> EventOutcome:
        [outcome] = self.engine.handle_delivery([event(name, **changes)])
        return outcome


@pytest.fixture
def fake_github(clock: FakeClock, app_key: AppKey) -> Iterator[FakeGitHub]:
    """A repository set up as the README asks: ``production`` requires a reviewer and prevents self-review."""
    fake = FakeGitHub(public_key=app_key.public_pem, fine_grained=(FINE_GRAINED,), clock=clock.now).start()
    fake.add_environment("production", reviewers=("ml-release-board",), prevent_self_review=True)
    yield fake
    fake.stop()


@pytest.fixture
def github_settings(fake_github: FakeGitHub, tmp_path: Path, app_key: AppKey) -> Callable[..., Settings]:
    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "github_api_url": fake_github.base, "github_app_id": fake_github.app_id,
            "github_app_private_key": app_key.private_pem, "github_app_installation_id": fake_github.installation_id,
            "github_timeout_seconds": 5.0, "state_dir": tmp_path,
        }
        values.update(overrides)
        return Settings(**values)

    return build


@pytest.fixture
def make_github_release(
    tmp_path: Path, clock: FakeClock, fake_github: FakeGitHub, github_settings: Callable[..., Settings]
) -> Iterator[Callable[..., GitHubRelease]]:
    ledgers: list[SqliteLedger] = []

    def build(rules: Rules | str = GITHUB_RULES, *, ledger: SqliteLedger | None = None,
              **settings: Any) -> GitHubRelease:
        ledger = ledger or SqliteLedger(tmp_path / "ledger.sqlite3")
        ledgers.append(ledger)
        sleeps: list[float] = []
        adapter = GitHubReleaseAdapter(github_settings(**settings), ledger, clock=clock, sleep=sleeps.append,
                                       rng=random.Random(7))
        adapters: dict[ActionKind, Any] = {kind: ScriptedAdapter(kind) for kind in ActionKind}
        adapters[ActionKind.QUEUE_RELEASE] = adapter
        parsed = rules_from(rules) if isinstance(rules, str) else rules
        return GitHubRelease(Engine(parsed, ledger, adapters, clock=clock), ledger, adapter, fake_github, clock,
                             sleeps)

    yield build
    for ledger in ledgers:
        ledger.close()
