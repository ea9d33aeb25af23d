"""The result is visible: the audit record and the Ops notification that follows the release carry the run URL and
say that it awaits approval in the environment (the notify renders ``{{ release.* }}``, the queue_release result)."""

from __future__ import annotations

from collections.abc import Callable

from shared.actions import ActionKind, NotifyParams
from shared.errors import TransientError
from tests.conftest import ROOT
from tests.devops.conftest import Release
from tests.fakes.azure_devops import FakeAzureDevOps

RULES = """
channels:
  ops-teams: {type: teams, url_setting: MLREACTOR_TEAMS_OPS_URL}
rules:
  - name: release-registered-model
    on: ModelRegistered
    do:
      - queue_release: {id: release, project: mlops, pipeline_id: 42, environment: production}
      - notify:
          channels: [ops-teams]
          message: release_queued
          text: "{{ release.model }}:{{ release.version }} awaits approval in environment {{ release.environment }}"
          facts: {run: "{{ release.url }}"}
"""


def _notification(release: Release) -> NotifyParams:
    [notify] = release.engine.adapters[ActionKind.NOTIFY].executed  # type: ignore[attr-defined]
    assert isinstance(notify.params, NotifyParams)
    return notify.params


def test_the_notification_after_a_release_carries_its_url_and_the_environment_that_holds_it(
    make_release: Callable[..., Release], fake_devops: FakeAzureDevOps
) -> None:
    release = make_release(RULES)

    outcome = release.deliver()

    assert outcome.outcome.value == "acted", outcome.reason
    [run] = fake_devops.runs.values()
    web = run["_links"]["web"]["href"]
    sent = _notification(release)
    assert sent.facts["run"] == web
    assert sent.text == "sklearn_regression_model:20 awaits approval in environment production"
    [audit] = release.ledger.audit(limit=1)
    assert audit.actions[0]["url"] == web
    assert audit.actions[0]["detail"].endswith("awaiting approval in environment production")


def test_a_notification_retried_on_redelivery_still_gets_the_release_that_was_already_queued(
    make_release: Callable[..., Release], fake_devops: FakeAzureDevOps
) -> None:
    release = make_release(RULES)
    release.engine.adapters[ActionKind.NOTIFY].fail_next(TransientError("Teams answered 503"))  # type: ignore[attr-defined]
    assert release.deliver().outcome.value == "failed"

    again = release.deliver()

    assert again.outcome.value == "acted", again.reason
    assert len(fake_devops.calls("POST")) == 1
    [run] = fake_devops.runs.values()
    assert _notification(release).facts["run"] == run["_links"]["web"]["href"]


def test_a_second_event_about_the_same_version_notifies_with_the_release_already_queued(
    make_release: Callable[..., Release], fake_devops: FakeAzureDevOps
) -> None:
    release = make_release(RULES)
    release.deliver()
    release.engine.adapters[ActionKind.NOTIFY].executed.clear()  # type: ignore[attr-defined]

    release.deliver(id="a-duplicate-model-registered")

    [run] = fake_devops.runs.values()
    assert _notification(release).facts["run"] == run["_links"]["web"]["href"]


def test_the_shipped_release_rule_notifies_with_the_run_url() -> None:
    text = (ROOT / "reactions.yaml").read_text()
    assert "id: release" in text
    assert '"{{ release.url }}"' in text
