"""publish_event for real: azure-eventgrid's EventGridPublisherClient against a loopback HTTPS topic.

What a subscriber of mlreactor's topic can rely on: CloudEvents 1.0 in a batch, the same id for the same action on
every redelivery, the correlation id, and a publisher that retries throttling and outages briefly, then hands the
event back to Event Grid (transient) or quarantines it with the service's reason (permanent).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from azure.core.credentials import AccessToken
from azure.identity import DefaultAzureCredential

from shared.actions import ActionKind, PlannedAction
from shared.adapters import build_adapters
from shared.adapters.dryrun import DryRunAdapter
from shared.adapters.eventgrid_out import EventGridPublisher
from shared.engine import Engine
from shared.errors import PermanentError, TransientError
from shared.events import parse_event
from shared.ledger.sqlite import SqliteLedger
from shared.outcomes import Outcome
from shared.settings import Settings
from tests.conftest import WORKSPACE, FakeClock, delivery, event, rules_from
from tests.eventgrid_out.conftest import TOPIC_KEY
from tests.fakes.eventgrid_topic import FakeEventGridTopic

RULES = rules_from("""
rules:
  - name: announce-completed-run
    on: RunCompleted
    do:
      - publish_event:
          type: mlreactor.GateFailed
          subject: "runs/{{ run.id }}"
          data:
            run: "{{ run.id }}"
            experiment: "{{ run.experiment_name }}"
""")
CORRELATION = "chain-7f3a"


def planned(correlation: str = CORRELATION) -> PlannedAction:
    """The publish_event action the rules plan for the sample RunCompleted event (carrying a correlation tag)."""
    raw = event("run_completed")
    raw["data"]["runTags"] = {"mlreactor.correlation": correlation}
    engine = Engine(RULES, ledger=None, adapters={})  # type: ignore[arg-type]  # plan() touches neither
    (action,) = engine.plan(parse_event(raw)).actions
    return action


class StaticTokenCredential:
    """Stands in for the managed identity: hands out a fixed bearer token and remembers the scopes asked for."""

    def __init__(self) -> None:
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken("token-for-eventgrid", int(time.time()) + 3600)


# the wire ---------------------------------------------------------------------------------------------------------
def test_given_a_topic_key_when_an_action_publishes_then_one_cloudevents_batch_of_one_is_posted(
    topic: FakeEventGridTopic, publisher: Callable[..., EventGridPublisher]
) -> None:
    action = planned()
    result = publisher().execute(action)

    (post,) = topic.requests
    assert post.method == "POST"
    assert post.path == "/api/events"
    assert post.query == {"api-version": ["2018-01-01"]}
    assert post.headers["content-type"] == "application/cloudevents-batch+json; charset=utf-8"
    assert post.headers["aeg-sas-key"] == TOPIC_KEY
    assert "authorization" not in post.headers
    body = post.json()
    assert isinstance(body, list) and len(body) == 1, "one action = one event, sent as a batch (a JSON array)"
    (published,) = body
    assert published["specversion"] == "1.0"
    assert published["id"] == action.key == result.external_id
    assert published["source"] == "/mlreactor" + WORKSPACE
    assert published["type"] == "mlreactor.GateFailed"
    assert published["subject"] == "runs/AutoML_ad912b2d-6467-4f32-a616-dbe4af6dd8fc_5"
    assert published["datacontenttype"] == "application/json"
    assert published["correlationid"] == CORRELATION
    assert published["data"] == {
        "correlationId": CORRELATION,
        "run": "AutoML_ad912b2d-6467-4f32-a616-dbe4af6dd8fc_5",
        "experiment": "automl-local-regression",
    }
    assert published["time"].endswith("Z")
    extensions = set(published) - {"id", "source", "type", "specversion", "subject", "time", "datacontenttype", "data"}
    assert extensions == {"correlationid"}
    assert all(name.isalnum() and name.islower() and len(name) <= 20 for name in extensions), "CloudEvents naming"
    assert "topic 127.0.0.1" in result.detail


def test_given_no_key_when_publishing_then_the_managed_identity_token_is_sent_for_the_eventgrid_scope(
    topic: FakeEventGridTopic, publisher: Callable[..., EventGridPublisher]
) -> None:
    identity = StaticTokenCredential()
    publisher(credential=identity, eventgrid_topic_key=None).execute(planned())

    (post,) = topic.requests
    assert post.headers["authorization"] == "Bearer token-for-eventgrid"
    assert "aeg-sas-key" not in post.headers
    assert identity.scopes == [("https://eventgrid.azure.net/.default",)]


@pytest.mark.parametrize("key", [None, ""], ids=["unset", "empty-as-in-the-sample-settings"])
def test_without_a_key_the_publisher_authenticates_with_the_managed_identity(key: str | None) -> None:
    """No token is fetched here (that would call the instance metadata endpoint): the credential's type is the claim."""
    endpoint = "https://t.westeurope-1.eventgrid.azure.net/api/events"
    publisher = EventGridPublisher(Settings(eventgrid_topic_endpoint=endpoint, eventgrid_topic_key=key))
    assert isinstance(publisher._new_credential(), DefaultAzureCredential)


def test_publishing_logs_no_warning_for_every_event(
    publisher: Callable[..., EventGridPublisher], caplog: pytest.LogCaptureFixture
) -> None:
    """azure-eventgrid warns about each per-call option it forwards into its model; that noise is filtered."""
    with caplog.at_level(logging.WARNING):
        publisher().execute(planned())
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_the_same_action_always_publishes_the_same_id_and_source_so_subscribers_can_dedupe(
    topic: FakeEventGridTopic, publisher: Callable[..., EventGridPublisher]
) -> None:
    adapter = publisher()
    adapter.execute(planned())
    adapter.execute(planned())  # a redelivery of the same Azure ML event plans the same action again
    adapter.execute(planned(correlation="another-chain"))

    first, again, other = (p.json()[0] for p in topic.requests)
    assert (first["id"], first["source"]) == (again["id"], again["source"])
    assert other["id"] == first["id"], "the id depends on the event and the action, not on the chain"
    assert other["correlationid"] == "another-chain"


# faults -------------------------------------------------------------------------------------------------------------
def test_throttled_with_retry_after_then_the_publisher_waits_that_long_and_succeeds(
    topic: FakeEventGridTopic, publisher: Callable[..., EventGridPublisher], sleeps: list[float]
) -> None:
    topic.fail_next(429, headers={"Retry-After": "2"})
    publisher().execute(planned())

    assert len(topic.requests) == 2
    assert sleeps == [2.0]
    assert topic.requests[0].json() == topic.requests[1].json(), "the retry repeats the same event"


def test_retries_wait_at_most_six_seconds_in_all_to_stay_inside_the_delivery_window(
    topic: FakeEventGridTopic, publisher: Callable[..., EventGridPublisher], sleeps: list[float]
) -> None:
    topic.fail_next(429, times=3, headers={"Retry-After": "4"})
    with pytest.raises(TransientError, match="after 2 attempt"):
        publisher(retry_total=5).execute(planned())
    assert sleeps == [4.0]


def test_an_outage_is_retried_with_backoff_then_handed_back_to_event_grid_as_transient(
    topic: FakeEventGridTopic, publisher: Callable[..., EventGridPublisher], sleeps: list[float]
) -> None:
    topic.fail_next(503, times=10)
    with pytest.raises(TransientError) as caught:
        publisher(retry_total=3).execute(planned())

    assert len(topic.requests) == 4
    assert sleeps == [0.5, 1.0, 2.0]
    message = str(caught.value)
    assert "mlreactor.GateFailed" in message and "topic 127.0.0.1" in message
    assert "HTTP 503" in message and "injected 503" in message and "after 4 attempt(s)" in message


def test_a_retry_after_longer_than_the_delivery_window_allows_is_left_to_event_grid(
    topic: FakeEventGridTopic, publisher: Callable[..., EventGridPublisher], sleeps: list[float]
) -> None:
    topic.fail_next(429, headers={"Retry-After": "60"})
    with pytest.raises(TransientError, match="HTTP 429"):
        publisher().execute(planned())

    assert len(topic.requests) == 1
    assert sleeps == []


def test_a_rejected_event_is_a_permanent_error_with_the_services_message_and_no_secret(
    topic: FakeEventGridTopic, publisher: Callable[..., EventGridPublisher], sleeps: list[float]
) -> None:
    topic.fail_next(400, message="Property 'type' is too long. Report 'aeg-abc' to support.")
    with pytest.raises(PermanentError) as caught:
        publisher().execute(planned())

    assert len(topic.requests) == 1 and sleeps == []
    message = str(caught.value)
    assert "publish mlreactor.GateFailed to topic 127.0.0.1: HTTP 400" in message
    assert "Property 'type' is too long" in message
    assert TOPIC_KEY not in message


def test_a_wrong_key_is_a_permanent_error(
    topic: FakeEventGridTopic, publisher: Callable[..., EventGridPublisher]
) -> None:
    with pytest.raises(PermanentError, match="not authorized"):
        publisher(eventgrid_topic_key="not-the-key").execute(planned())
    assert len(topic.requests) == 1


def test_a_topic_that_does_not_answer_is_transient(
    topic: FakeEventGridTopic, publisher: Callable[..., EventGridPublisher], sleeps: list[float]
) -> None:
    adapter = publisher(retry_total=1)
    topic.stop()  # nothing listens on the port any more: connection refused
    with pytest.raises(TransientError, match="no answer"):
        adapter.execute(planned())
    assert sleeps == [0.5]


# through the engine -----------------------------------------------------------------------------------------------
def engine_with(adapter: EventGridPublisher, tmp_path: Path) -> Engine:
    adapters: dict[ActionKind, Any] = {kind: DryRunAdapter(kind) for kind in ActionKind}
    adapters[ActionKind.PUBLISH_EVENT] = adapter
    return Engine(RULES, SqliteLedger(tmp_path / "ledger.sqlite3"), adapters, clock=FakeClock())


def test_an_outage_fails_the_delivery_and_the_redelivery_publishes_the_same_id_once(
    topic: FakeEventGridTopic, publisher: Callable[..., EventGridPublisher], tmp_path: Path
) -> None:
    engine = engine_with(publisher(retry_total=1), tmp_path)
    payload = json.dumps(delivery("run_completed"))
    topic.fail_next(503, times=2)

    (first,) = engine.handle_delivery(payload)
    (second,) = engine.handle_delivery(payload)  # Event Grid redelivers
    (third,) = engine.handle_delivery(payload)  # and, at least once, again

    assert [first.outcome, second.outcome, third.outcome] == [Outcome.FAILED, Outcome.ACTED, Outcome.DUPLICATE]
    assert first.should_raise
    ids = {p.json()[0]["id"] for p in topic.requests}
    assert len(topic.requests) == 3 and len(ids) == 1
    assert second.actions[0].external_id in ids


def test_a_rejected_publish_quarantines_the_event(
    topic: FakeEventGridTopic, publisher: Callable[..., EventGridPublisher], tmp_path: Path
) -> None:
    engine = engine_with(publisher(), tmp_path)
    topic.fail_next(400, message="Data exceeds 1 MB.")

    (outcome,) = engine.handle_delivery(json.dumps(delivery("run_completed")))

    assert outcome.outcome is Outcome.QUARANTINED and not outcome.should_raise
    assert "Data exceeds 1 MB." in outcome.reason
    (record,) = engine.ledger.quarantined()
    assert "HTTP 400" in record.reason


# wiring -----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("settings", "live"),
    [
        ({"eventgrid_topic_endpoint": "https://t.westeurope-1.eventgrid.azure.net/api/events"}, True),
        ({"eventgrid_topic_endpoint": "https://t.westeurope-1.eventgrid.azure.net/api/events", "dry_run": True}, False),
        ({}, False),
    ],
    ids=["endpoint-set", "dry-run-forced", "no-endpoint"],
)
def test_publish_event_is_live_only_when_a_topic_is_configured_and_dry_run_is_not_forced(
    settings: dict[str, Any], live: bool, tmp_path: Path
) -> None:
    ledger = SqliteLedger(tmp_path / "ledger.sqlite3")
    adapters = build_adapters(Settings(**{"eventgrid_topic_endpoint": None, **settings}), RULES, ledger)
    ledger.close()
    assert adapters[ActionKind.PUBLISH_EVENT].live is live
    assert isinstance(adapters[ActionKind.PUBLISH_EVENT], EventGridPublisher) is live
