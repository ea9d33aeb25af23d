"""The hook endpoints' contract: who may send, what is recorded, what comes out — through the real engine and rules.

The engine is the shipped rules on a SQLite ledger with dry-run adapters (tests/conftest.py ``make_engine``): the
hooks are judged by what the engine does with the event they become.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

import pytest

from shared.actions import ActionKind, TagModelParams
from shared.ledger.port import ReleaseState
from shared.releases import hooks
from shared.settings import Settings
from tests.conftest import WORKSPACE, Harness
from tests.releases.conftest import payload, queued

SECRET = "s3cret-hook-value"
GITHUB_SECRET = "gh-webhook-secret"
SETTINGS = Settings.model_validate({"release_hook_secret": SECRET, "github_webhook_secret": GITHUB_SECRET})


def basic(password: str, user: str = "mlreactor") -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def ado(harness: Harness, body: Any, headers: dict[str, str] | None = None, organization: str | None = "contoso",
        settings: Settings = SETTINGS) -> hooks.HookAnswer:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return hooks.azure_devops(harness.engine, settings, headers if headers is not None else basic(SECRET), raw,
                              organization, harness.clock.now())


def signed(body: bytes, secret: str = GITHUB_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def github(harness: Harness, event: str, body: Any, signature: str | None = None,
           delivery: str = "72d3162e-cc78-11e3-81ab-4c9367dc0958") -> hooks.HookAnswer:
    raw = json.dumps(body).encode()
    headers = {"X-GitHub-Event": event, "X-GitHub-Delivery": delivery,
               "X-Hub-Signature-256": signature if signature is not None else signed(raw)}
    return hooks.github(harness.engine, SETTINGS, headers, raw, harness.clock.now())


@pytest.fixture
def harness(make_engine: Callable[..., Harness]) -> Harness:
    harness = make_engine()
    harness.ledger.track_release(queued("11"))  # run 11 of the documented run-state sample was queued by mlreactor
    return harness


def champion_tagging(harness: Harness) -> list[TagModelParams]:
    return [a.params for a in harness.executed(ActionKind.TAG_MODEL) if isinstance(a.params, TagModelParams)]


# who may send ---------------------------------------------------------------------------------------------------
def test_basic_auth_with_the_secret_as_password_is_accepted(harness: Harness) -> None:
    answer = ado(harness, payload("azure_devops/run_state_changed"))
    assert answer.status == 200 and answer.body["outcome"] == "acted"
    assert answer.body["event_type"] == "ReleaseDeployed"


def test_the_custom_header_is_accepted_instead_of_basic_auth(harness: Harness) -> None:
    answer = ado(harness, payload("azure_devops/run_state_changed"), {"X-Mlreactor-Hook-Secret": SECRET})
    assert answer.status == 200 and answer.body["outcome"] == "acted"


@pytest.mark.parametrize("headers", [
    {}, basic("wrong"), basic(SECRET[:-1]), {"X-Mlreactor-Hook-Secret": "wrong"}, {"Authorization": "Basic %%%"},
    {"Authorization": f"Bearer {SECRET}"}, {"X-Mlreactor-Hook-Secret": ""},
], ids=["none", "wrong-password", "prefix", "wrong-header", "not-base64", "bearer", "empty-header"])
def test_missing_or_wrong_credentials_get_401_and_nothing_is_recorded(harness: Harness,
                                                                      headers: dict[str, str]) -> None:
    answer = ado(harness, payload("azure_devops/run_state_changed"), headers)
    assert answer.status == 401
    assert SECRET not in json.dumps(answer.body)
    assert harness.ledger.audit() == [] and harness.executed() == []
    record = harness.ledger.find_release("azure-devops-pipeline", "contoso", "11")
    assert record is not None and record.state is ReleaseState.QUEUED


def test_without_a_configured_secret_every_hook_is_refused(harness: Harness) -> None:
    answer = ado(harness, payload("azure_devops/run_state_changed"), settings=Settings())
    assert answer.status == 401 and harness.ledger.audit() == []


def test_github_needs_the_hmac_of_the_raw_body(harness: Harness) -> None:
    harness.ledger.track_release(queued("289782451", target="github-actions", scope="octo-org/octo-repo"))
    body = payload("github/workflow_run_completed")
    assert github(harness, "workflow_run", body, signature="").status == 401
    assert github(harness, "workflow_run", body, signature=signed(b"other body")).status == 401
    assert github(harness, "workflow_run", body, signature=signed(json.dumps(body).encode(), "x")).status == 401
    assert github(harness, "workflow_run", body, signature="sha1=" + "0" * 40).status == 401
    assert harness.ledger.audit() == []
    answer = github(harness, "workflow_run", body)
    assert answer.status == 200 and answer.body["outcome"] == "acted"
    assert answer.body["event_type"] == "ReleaseDeployed"


def test_an_oversize_body_gets_413_before_anything_else(harness: Harness) -> None:
    small = Settings.model_validate({"release_hook_secret": SECRET, "release_hook_max_bytes": 1000})
    answer = ado(harness, payload("azure_devops/run_state_changed"), settings=small)
    assert answer.status == 413 and harness.ledger.audit() == []


# what is recorded ----------------------------------------------------------------------------------------------
def test_an_unknown_event_type_is_200_ignored(harness: Harness) -> None:
    body = payload("azure_devops/run_state_changed")
    body["eventType"] = "git.push"
    answer = ado(harness, body)
    assert answer.status == 200 and answer.body["outcome"] == "ignored"
    assert "git.push is not a release transition" in answer.body["reason"]


def test_a_github_ping_is_200_ignored(harness: Harness) -> None:
    answer = github(harness, "ping", {"zen": "Design for failure.", "hook_id": 12})
    assert answer.status == 200 and answer.body["outcome"] == "ignored"


def test_a_replay_of_the_same_notification_is_a_duplicate(harness: Harness) -> None:
    first = ado(harness, payload("azure_devops/run_state_changed"))
    again = ado(harness, payload("azure_devops/run_state_changed"))
    assert (first.body["outcome"], again.body["outcome"]) == ("acted", "duplicate")
    assert len(champion_tagging(harness)) == 1


def test_a_run_mlreactor_did_not_queue_is_ignored_and_audited(harness: Harness) -> None:
    body = payload("azure_devops/run_state_changed")
    body["resource"]["run"]["id"] = 999
    answer = ado(harness, body)
    assert answer.body["outcome"] == "ignored"
    assert answer.body["reason"] == "no release mlreactor queued is azure-devops-pipeline contoso #999"
    assert harness.executed() == []
    (entry,) = harness.ledger.audit()
    assert (entry.outcome, entry.event_type) == ("ignored", "ms.vss-pipelines.run-state-changed-event")


def test_the_same_run_id_in_another_organization_is_not_ours(harness: Harness) -> None:
    answer = ado(harness, payload("azure_devops/run_state_changed"), organization="fabrikam")
    assert answer.body["outcome"] == "ignored" and harness.executed() == []


def test_a_forged_model_name_in_the_payload_changes_nothing(harness: Harness) -> None:
    """GIVEN mlreactor queued run 11 for credit-fraud:2
    WHEN a notification about run 11 carries another model's name and version wherever a payload could
    THEN the champion tags go to credit-fraud:2, the model mlreactor recorded."""
    body = payload("azure_devops/run_state_changed")
    body["resource"]["run"]["templateParameters"] = {"modelName": "payments-risk", "modelVersion": "9",
                                                      "correlationId": "someone-else"}
    body["resource"]["run"]["name"] = "payments-risk:9"
    body["message"]["text"] = "Run payments-risk:9 succeeded."
    answer = ado(harness, body)
    assert answer.body["outcome"] == "acted" and answer.body["correlation_id"] == "chain-7"
    (tagging,) = champion_tagging(harness)
    assert (tagging.model, tagging.version, tagging.tags["mlreactor.stage"]) == ("credit-fraud", "2", "champion")
    (action,) = harness.executed(ActionKind.TAG_MODEL)
    assert action.event.source == WORKSPACE


def test_a_signal_for_another_stage_than_the_releases_environment_is_ignored(harness: Harness) -> None:
    harness.ledger.track_release(queued("1", target="azure-devops-release", environment="production"))
    answer = ado(harness, payload("azure_devops/release_approval_pending"))  # the sample's stage is "Dev"
    assert answer.body["outcome"] == "ignored"
    assert answer.body["reason"] == "pre-deployment approval pending is about 'Dev', mlreactor waits for 'production'"


def test_a_late_approval_after_the_deployment_is_ignored(harness: Harness) -> None:
    harness.ledger.track_release(queued("1", target="azure-devops-release", environment="Dev"))
    assert ado(harness, payload("azure_devops/release_deployment_completed")).body["outcome"] == "acted"
    late = ado(harness, payload("azure_devops/release_approval_completed"))
    assert late.body["outcome"] == "ignored"
    assert late.body["reason"] == "pre-deployment approval approved: the release is already deployed"


def test_a_body_that_is_not_json_is_quarantined_with_the_reason(harness: Harness) -> None:
    answer = ado(harness, b"{not json")
    assert answer.status == 200 and answer.body["outcome"] == "quarantined"
    (stored,) = harness.ledger.quarantined()
    assert stored.raw == "{not json" and "not JSON" in stored.reason


def test_a_transient_engine_failure_answers_503_so_the_sender_may_retry(harness: Harness) -> None:
    from shared.errors import TransientError

    harness.adapters[ActionKind.TAG_MODEL].fail_next(TransientError("Azure ML throttled"))
    answer = ado(harness, payload("azure_devops/run_state_changed"))
    assert answer.status == 503 and answer.body["outcome"] == "failed"
    record = harness.ledger.find_release("azure-devops-pipeline", "contoso", "11")
    assert record is not None and record.state is ReleaseState.QUEUED  # the redelivery or the reconciler closes it
    assert ado(harness, payload("azure_devops/run_state_changed")).body["outcome"] == "acted"


# what comes out ------------------------------------------------------------------------------------------------
def test_a_rejection_tags_who_and_why_and_notifies(harness: Harness) -> None:
    body = payload("azure_devops/approval_completed")
    body["resource"]["run"] = {"id": 11}
    approval = body["resource"]["approval"]
    approval["status"] = approval["steps"][0]["status"] = "rejected"
    approval["steps"][0].update(actualApprover={"displayName": "Dana Reviewer"}, comment="AUC gain too small")
    answer = ado(harness, body)
    assert answer.body["event_type"] == "ReleaseRejected" and answer.body["outcome"] == "acted"
    (tagging,) = champion_tagging(harness)
    assert tagging.tags == {"mlreactor.stage": "rejected", "mlreactor.verdict": "rejected-by-reviewer",
                            "mlreactor.reviewer": "Dana Reviewer", "mlreactor.review_comment": "AUC gain too small"}
    (notice,) = harness.executed(ActionKind.NOTIFY)
    assert notice.params.model_dump()["title"] == "Release of credit-fraud:2 rejected by Dana Reviewer"


def test_awaiting_approval_notifies_with_the_approval_link(harness: Harness) -> None:
    body = payload("azure_devops/approval_pending")
    body["resource"]["run"] = {"id": 11, "_links": {"web": {"href": "https://dev.azure.com/contoso/mlops/_build/"
                                                                    "results?buildId=11"}}}
    answer = ado(harness, body)
    assert answer.body["event_type"] == "ReleaseAwaitingApproval"
    (notice,) = harness.executed(ActionKind.NOTIFY)
    params = notice.params.model_dump()
    assert params["links"] == {"Review the pending approval": "https://dev.azure.com/contoso/mlops/_build/"
                                                              "results?buildId=11"}
    assert params["title"] == "credit-fraud:2 awaits approval in production"
    record = harness.ledger.find_release("azure-devops-pipeline", "contoso", "11")
    assert record is not None and record.state is ReleaseState.AWAITING_APPROVAL
    assert record.waiting_since == harness.clock.now()


# through the Function App, as the host calls it -------------------------------------------------------------------
def test_the_function_app_serves_both_hooks_with_function_keys_and_the_reconciler_timer() -> None:
    from tests.conftest import indexed

    functions = indexed()
    for name, route in (("azure_devops_hook", "hooks/azure-devops/{organization?}"), ("github_hook", "hooks/github")):
        trigger = functions[name].get_bindings()[0].get_dict_repr()
        assert (trigger["type"], trigger["route"], trigger["authLevel"].name) == ("httpTrigger", route, "FUNCTION")
        assert [m.name if hasattr(m, "name") else m for m in trigger["methods"]] == ["POST"]
    timer = functions["reconcile_releases"].get_bindings()[0].get_dict_repr()
    assert (timer["type"], timer["schedule"]) == ("timerTrigger", "0 */5 * * * *")


def test_a_hook_request_through_the_function(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    import azure.functions as func

    from shared import runtime
    from shared import settings as settings_module
    from tests.conftest import indexed

    monkeypatch.setattr(runtime, "_engine", harness.engine)
    monkeypatch.setattr(settings_module, "get_settings", lambda: SETTINGS)
    body = json.dumps(payload("azure_devops/run_state_changed")).encode()
    request = func.HttpRequest("POST", "https://app/api/hooks/azure-devops/contoso", headers=basic(SECRET),
                               route_params={"organization": "contoso"}, body=body)
    response = indexed()["azure_devops_hook"].get_user_function()(request)
    assert response.status_code == 200 and json.loads(response.get_body())["outcome"] == "acted"
    refused = func.HttpRequest("POST", "https://app/api/hooks/azure-devops/contoso", headers=basic("nope"),
                               route_params={"organization": "contoso"}, body=body)
    assert indexed()["azure_devops_hook"].get_user_function()(refused).status_code == 401


def test_the_reconciler_timer_runs_one_pass_with_the_process_engine(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    """Without an Azure DevOps organization there is no reader: the pass says so, and checks the release off."""
    from shared import runtime
    from shared import settings as settings_module
    from tests.conftest import indexed

    monkeypatch.setattr(runtime, "_engine", harness.engine)
    monkeypatch.setattr(settings_module, "get_settings", lambda: SETTINGS)
    with caplog.at_level("INFO", logger="mlreactor.functions.release_hooks"):
        indexed()["reconcile_releases"].get_user_function()(None)
    assert "0 release(s) read: no transitions; 1 not readable: azure-devops-pipeline #11: no reader" in caplog.text
    record = harness.ledger.find_release("azure-devops-pipeline", "contoso", "11")
    assert record is not None and record.checked_at is not None  # checked off (by the system clock's time)
