"""What one event costs on Table Storage: HTTP round-trips per outcome with the shipped rules, counted on the wire.

The engine runs the shipped ``reactions.yaml`` on a Tables ledger on Azurite with a live notify adapter posting to
a local receiver; every request either SDK client sends (tables and blobs) is counted by azure-core's
``raw_request_hook``. Counts, not times: a change that adds a write to the way of an event fails here. Where each
write comes from: ``shared/ledger/tables.py``'s docstring.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from shared.engine import Engine
from shared.ledger.tables import TablesLedger
from shared.outcomes import Outcome
from shared.settings import Settings
from tests.fakes.azurite import Azurite
from tests.fakes.webhook_receiver import WebhookReceiver
from tests.ledger.conftest import tables_settings
from tests.ledger.shipped import channels_to, delivery, shipped_engine

pytestmark = pytest.mark.azurite

Trips = Callable[[str], tuple[Outcome, int]]


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    started = WebhookReceiver().start()
    with channels_to(started):
        yield started
    started.stop()


def counting(settings: Settings, tmp_path: Path) -> tuple[Engine, Trips]:
    """An engine on its own Tables ledger instance, and ``trips(payload)`` → (outcome, round-trips it cost)."""
    sent: list[str] = []
    ledger = TablesLedger.from_settings(settings, raw_request_hook=lambda r: sent.append(r.http_request.method))
    engine = shipped_engine(ledger, tmp_path / f"effects-{id(ledger)}.log")

    def trips(payload: str) -> tuple[Outcome, int]:
        before = len(sent)
        (outcome,) = engine.handle_delivery(payload)
        return outcome.outcome, len(sent) - before

    return engine, trips


@pytest.fixture
def settings(azurite: Azurite) -> Settings:
    return tables_settings(azurite)


@pytest.fixture
def trips(settings: Settings, tmp_path: Path, receiver: WebhookReceiver) -> Trips:
    _, measure = counting(settings, tmp_path)
    measure(delivery("unparseable", 999))  # first use of the quarantine container creates it, once per instance
    return measure


@pytest.mark.parametrize(("kind", "expected"), [
    ("model_registered", 4),  # claim, once_per window, tag_model's result, settle (run_pipeline's result + audit)
    ("model_registered_in_chain", 5),  # + the audit entry's copy in the chain's correlation partition
    ("model_deployed", 5),  # claim, tag_model's result, notify: flapping window, channel start; settle
    ("run_failed", 6),  # claim, notify: flapping window, throttle_key window, 2 channel starts; settle
    ("drift", 7),  # claim, throttle, run_pipeline's result, notify (window, channel), notify's results, settle
    ("run_completed", 2),  # ignored: claim, settle
    ("foreign", 1),  # rejected: the audit entry
    ("unparseable", 4),  # quarantined: claim, payload blob, quarantine record, settle
])
def test_given_the_shipped_rules_when_a_fresh_event_is_handled_then_it_costs_these_round_trips(
    trips: Trips, kind: str, expected: int
) -> None:
    outcome, cost = trips(delivery(kind, 1))

    assert outcome is {"run_completed": Outcome.IGNORED, "foreign": Outcome.REJECTED,
                       "unparseable": Outcome.QUARANTINED}.get(kind, Outcome.ACTED)
    assert cost == expected


def test_given_the_targets_of_issue_17_then_each_holds(trips: Trips, receiver: WebhookReceiver) -> None:
    """acted ModelRegistered ≤ 4; acted with one live channel ≤ 5; each extra channel ≤ +1; duplicate, ignored and
    rejected ≤ 2."""
    registered = trips(delivery("model_registered", 2))[1]
    one_channel = trips(delivery("model_deployed", 2))[1]
    two_channels = trips(delivery("run_failed", 2))[1]  # the same notify path plus a throttle_key window
    duplicate = trips(delivery("model_deployed", 2))
    ignored, rejected = trips(delivery("run_completed", 2))[1], trips(delivery("foreign", 2))[1]

    assert registered <= 4 and one_channel <= 5
    assert [r.path for r in receiver.requests][-3:] == [  # the notifications really went out, once each
        "/mlreactor_teams_ops_url", "/mlreactor_teams_ops_url", "/mlreactor_slack_ops_url"
    ]
    assert two_channels - one_channel - 1 <= 1  # minus the throttle_key window run_failed adds
    assert duplicate == (Outcome.DUPLICATE, 2)  # the claim's insert (409) and its read; nothing is written
    assert ignored <= 2 and rejected <= 2


def test_given_a_throttled_monitor_when_it_drifts_again_then_this_instance_decides_in_one_write(
    trips: Trips, settings: Settings, tmp_path: Path
) -> None:
    """The instance that opened the window remembers its ETag: the count of held events is one conditional write.
    Another instance has not seen it: its insert meets 409, it reads the window, then writes."""
    assert trips(delivery("drift", 3))[0] is Outcome.ACTED
    again = trips(delivery("drift_again", 3))
    _, elsewhere = counting(settings, tmp_path)
    other = elsewhere(delivery("drift_again", 3).replace("drift_again-3", "drift_again-3b"))

    assert again == (Outcome.IGNORED, 3)  # claim, counted window (If-Match the remembered ETag), settle
    assert other == (Outcome.IGNORED, 5)  # claim, insert 409, read, counted window, settle


def test_given_a_chain_when_its_timeline_is_read_then_the_first_event_and_the_later_ones_are_there(
    trips: Trips, settings: Settings, tmp_path: Path
) -> None:
    """The chain's first event keeps no copy (its id is the correlation id); the timeline still shows it."""
    engine, measure = counting(settings, tmp_path)
    measure(delivery("drift", 4).replace('"drift-4"', '"drift-77"'))
    measure(delivery("model_registered_in_chain", 77))

    timeline = engine.ledger.audit(correlation_id="drift-77")

    assert [(e.event_id, e.outcome) for e in reversed(timeline)] == [
        ("drift-77", "acted"), ("model_registered_in_chain-77", "acted")
    ]


def test_given_a_ledger_written_before_with_a_copy_of_the_chains_first_event_then_the_timeline_shows_it_once(
    settings: Settings, tmp_path: Path, receiver: WebhookReceiver
) -> None:
    from shared.ledger.tables import _audit_entity, _h

    engine, measure = counting(settings, tmp_path)
    measure(delivery("drift", 5).replace('"drift-5"', '"drift-78"'))
    (first,) = engine.ledger.audit(event_id="drift-78")
    engine.ledger._insert(_audit_entity("c" + _h("drift-78"), first, 0))  # type: ignore[attr-defined]

    assert [e.event_id for e in engine.ledger.audit(correlation_id="drift-78")] == ["drift-78"]
