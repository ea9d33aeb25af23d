"""Contract: what the real azure-devops SDK, driven by the release adapter, sends to Azure DevOps — URL, api-version
in the Accept header, auth header shape and body — for a YAML pipeline run and a classic release."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from shared.actions import ActionKind
from shared.ledger.sqlite import SqliteLedger
from tests.conftest import FakeClock
from tests.devops.conftest import BASIC, BEARER, CLASSIC_RULES, FakeCredential, Release
from tests.fakes.azure_devops import FakeAzureDevOps


def test_given_a_pipeline_rule_when_a_model_is_registered_then_one_run_is_queued_with_string_parameters(
    make_release: Callable[..., Release], fake_devops: FakeAzureDevOps
) -> None:
    release = make_release()

    outcome = release.deliver()

    assert outcome.outcome.value == "acted", outcome.reason
    [post] = fake_devops.calls("POST")
    assert post.path == "/contoso/mlops/_apis/pipelines/42/runs"
    assert post.accept == "application/json;api-version=7.1-preview.1"
    assert post.headers["authorization"] == BASIC
    params = post.body["templateParameters"]
    assert all(isinstance(v, str) for v in params.values())
    assert params["modelName"] == "sklearn_regression_model"
    assert params["modelVersion"] == "20"
    assert params["correlationId"] == "831e1650-001e-001b-66ab-eeb76e069631"
    assert params["approvers"] == "ml-release-board"
    assert params["smoke"] == "true"  # not Python's "True"
    assert json.loads(params["sourceEvent"])["type"] == "Microsoft.MachineLearningServices.ModelRegistered"
    assert len(params["releaseKey"]) == 64
    assert post.body["variables"] == {"deployTarget": {"value": "aks-prod", "isSecret": False}}
    assert post.body["resources"] == {"repositories": {"self": {"refName": "refs/heads/main"}}}
    assert post.body["stagesToSkip"] == ["canary"]


def test_the_sdk_discovers_locations_before_it_posts(
    make_release: Callable[..., Release], fake_devops: FakeAzureDevOps
) -> None:
    make_release().deliver()

    methods = [(r.method, r.path) for r in fake_devops.requests]
    post = ("POST", "/contoso/mlops/_apis/pipelines/42/runs")
    assert methods.index(("OPTIONS", "/contoso/_apis")) < methods.index(post)


def test_the_result_names_the_run_url_and_the_environment_that_holds_it(
    make_release: Callable[..., Release], fake_devops: FakeAzureDevOps
) -> None:
    release = make_release()

    [action] = release.deliver().actions

    [run] = fake_devops.runs.values()
    assert action.external_id == str(run["id"])
    assert action.url == f"{fake_devops.base}/contoso/mlops/_build/results?buildId={run['id']}"
    assert action.detail.endswith("awaiting approval in environment production")
    [audit] = release.ledger.audit(limit=1)
    assert audit.actions[0]["url"] == action.url
    assert "awaiting approval in environment production" in audit.actions[0]["detail"]


def test_given_a_classic_rule_then_a_release_is_created_on_the_release_host_with_the_key_in_its_description(
    make_release: Callable[..., Release], fake_devops: FakeAzureDevOps
) -> None:
    release = make_release(CLASSIC_RULES)

    outcome = release.deliver()

    assert outcome.outcome.value == "acted", outcome.reason
    assert [r.path for r in fake_devops.calls("GET", "ResourceAreas")] == ["/contoso/_apis/ResourceAreas"]
    [post] = fake_devops.calls("POST")
    assert post.path == "/vsrm/contoso/mlops/_apis/Release/releases"
    assert post.accept == "application/json;api-version=7.1-preview.8"
    assert post.body["definitionId"] == 7
    assert post.body["artifacts"] == [
        {"alias": "_model-package", "instanceReference": {"id": "1234", "name": "20261120.3"}}
    ]
    assert post.body["variables"] == {"modelUri": {"value": "azureml:sklearn_regression_model:20"}}
    assert post.body["description"].startswith("model sklearn_regression_model:20 (correlation ")
    assert "mlreactor release key " in post.body["description"]
    [action] = outcome.actions
    assert action.url == f"{fake_devops.base}/contoso/mlops/_release?releaseId=1&_a=release-summary"
    assert action.detail.endswith("awaiting approval in environment Production")


def test_given_an_entra_identity_then_a_bearer_token_for_the_devops_scope_is_sent_and_refreshed_before_expiry(
    make_release: Callable[..., Release], fake_devops: FakeAzureDevOps, clock: FakeClock
) -> None:
    credential = FakeCredential(clock, lifetime=3600)
    release = make_release(credential=credential, devops_auth="auto")

    release.deliver()
    release.clock.advance(minutes=10)
    release.deliver(id="second-model-event", data={"ModelName": "other_model", "ModelVersion": 1})
    release.clock.advance(minutes=47)  # 3 min before expiry: inside the refresh margin
    release.deliver(id="third-model-event", data={"ModelName": "third_model", "ModelVersion": 1})

    assert {r.headers["authorization"] for r in fake_devops.requests} == {BEARER}
    assert credential.scopes == [("499b84ac-1321-427f-aa17-267ca6975798/.default",)] * 2
    assert len(fake_devops.calls("POST")) == 3


def test_given_no_entra_identity_then_the_pat_is_the_fallback(
    make_release: Callable[..., Release], fake_devops: FakeAzureDevOps
) -> None:
    class NoIdentity:
        def get_token(self, *scopes: str) -> object:
            from azure.core.exceptions import ClientAuthenticationError

            raise ClientAuthenticationError("no managed identity endpoint")

    release = make_release(credential=NoIdentity(), devops_auth="auto")

    assert release.deliver().outcome.value == "acted"
    assert {r.headers["authorization"] for r in fake_devops.requests} == {BASIC}


def test_the_queue_release_adapter_is_live_only_with_an_organization_and_without_forced_dry_run(
    devops_settings: Callable[..., object], tmp_path: Path
) -> None:
    from shared.adapters import build_adapters
    from tests.conftest import rules_from

    rules = rules_from("rules: []")
    ledger = SqliteLedger(tmp_path / "ledger.sqlite3")
    live = build_adapters(devops_settings(), rules, ledger)  # type: ignore[arg-type]
    forced = build_adapters(devops_settings(dry_run=True), rules, ledger)  # type: ignore[arg-type]
    unset = build_adapters(devops_settings(devops_organization_url=None), rules, ledger)  # type: ignore[arg-type]
    ledger.close()

    assert live[ActionKind.QUEUE_RELEASE].live
    assert not forced[ActionKind.QUEUE_RELEASE].live
    assert not unset[ActionKind.QUEUE_RELEASE].live


def test_given_no_token_and_no_pat_then_the_release_waits_for_redelivery_and_nothing_is_sent(
    make_release: Callable[..., Release], fake_devops: FakeAzureDevOps
) -> None:
    class FlakyIdentity:
        def get_token(self, *scopes: str) -> object:
            from azure.core.exceptions import ClientAuthenticationError

            raise ClientAuthenticationError("IMDS timed out")

    release = make_release(credential=FlakyIdentity(), devops_auth="auto", devops_pat=None)

    outcome = release.deliver()

    assert outcome.outcome.value == "failed"
    assert "cannot get an Entra ID token for Azure DevOps: ClientAuthenticationError" in outcome.reason
    assert fake_devops.requests == []


def test_given_no_identity_configured_and_no_pat_then_the_event_is_quarantined(
    make_release: Callable[..., Release], fake_devops: FakeAzureDevOps
) -> None:
    class NoIdentity:
        def get_token(self, *scopes: str) -> object:
            from azure.identity import CredentialUnavailableError

            raise CredentialUnavailableError("no credential in the chain")

    release = make_release(credential=NoIdentity(), devops_auth="entra")

    outcome = release.deliver()

    assert outcome.outcome.value == "quarantined"
    assert "CredentialUnavailableError" in outcome.reason
    assert fake_devops.requests == []

