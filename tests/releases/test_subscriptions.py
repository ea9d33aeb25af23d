"""The service-hooks set-up script against the fake Azure DevOps, through the real SDK's service-hooks client."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.releases.subscriptions import CLASSIC_EVENTS, PIPELINE_EVENTS, connect, ensure_subscriptions
from tests.conftest import ROOT
from tests.devops.conftest import PAT
from tests.fakes.azure_devops import FakeAzureDevOps

URL = "https://mlreactor-prod.azurewebsites.net/api/hooks/azure-devops/contoso?code=KEY-1"
SECRET = "hook-secret-42"


@pytest.fixture
def connection(fake_devops: FakeAzureDevOps, devops_cache_dir: Path) -> Iterator[object]:
    os.environ["AZURE_DEVOPS_CACHE_DIR"] = str(devops_cache_dir)
    yield connect(fake_devops.organization_url, PAT)


def test_first_run_creates_one_subscription_per_event_with_the_url_and_secret(
    fake_devops: FakeAzureDevOps, connection: object,
) -> None:
    changes = ensure_subscriptions(connection, ["mlops"], URL, SECRET, environment="production")
    assert [c.action for c in changes] == ["created"] * 7
    subscriptions = list(fake_devops.subscriptions.values())
    assert sorted(s["eventType"] for s in subscriptions) == sorted(e for _, e, _ in PIPELINE_EVENTS + CLASSIC_EVENTS)
    for s in subscriptions:
        assert (s["consumerId"], s["consumerActionId"]) == ("webHooks", "httpRequest")
        assert s["consumerInputs"]["url"] == URL and s["consumerInputs"]["basicAuthPassword"] == SECRET
        assert s["consumerInputs"]["messagesToSend"] == "all"  # the YAML approvals name their run only there
        assert s["publisherInputs"]["projectId"] == fake_devops.projects["mlops"]
    approvals = [s for s in subscriptions if s["eventType"].startswith("ms.vss-pipelinechecks-events.")]
    assert {s["publisherInputs"].get("environmentName") for s in approvals} == {"production"}


def test_running_it_again_updates_the_same_subscriptions_even_with_a_new_function_key(
    fake_devops: FakeAzureDevOps, connection: object,
) -> None:
    ensure_subscriptions(connection, ["mlops"], URL, SECRET)
    first = set(fake_devops.subscriptions)
    again = ensure_subscriptions(connection, ["mlops"], URL.replace("KEY-1", "KEY-2"), "rotated-secret")
    assert [c.action for c in again] == ["updated"] * 7
    assert set(fake_devops.subscriptions) == first
    assert {s["consumerInputs"]["basicAuthPassword"] for s in fake_devops.subscriptions.values()} == {
        "rotated-secret"}
    # the list shows the secret masked: the script matches on event, project and URL path, and re-sends the secret
    assert fake_devops.calls("GET", "/_apis/hooks/subscriptions")


def test_a_dry_run_changes_nothing(fake_devops: FakeAzureDevOps, connection: object) -> None:
    changes = ensure_subscriptions(connection, ["mlops"], URL, SECRET, flavours=("pipeline",), dry_run=True)
    assert [c.action for c in changes] == ["would create"] * 4
    assert fake_devops.subscriptions == {} and fake_devops.calls("POST") == []


def test_the_script_refuses_to_run_without_the_secret() -> None:
    env = {k: v for k, v in os.environ.items() if k != "MLREACTOR_RELEASE_HOOK_SECRET"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "subscribe-release-hooks.py"), "--organization",
         "https://dev.azure.com/contoso", "--project", "mlops", "--url", URL],
        capture_output=True, text=True, env=env, check=False,
    )
    assert done.returncode == 2 and "MLREACTOR_RELEASE_HOOK_SECRET" in done.stderr
