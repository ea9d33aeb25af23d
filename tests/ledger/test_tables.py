"""What only the Tables ledger has: settings, first-use creation, round-trips on the wire, faults on the wire.

Faults come from a loopback proxy in front of Azurite, so the real SDK sees real 503s, lost responses and timeouts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobServiceClient

from shared.actions import ActionKind
from shared.engine import Engine
from shared.errors import ConfigError, TransientError
from shared.ledger.port import ClaimOutcome, QuarantineRecord
from shared.ledger.tables import TablesLedger
from shared.outcomes import Outcome
from shared.reactions import load_rules
from shared.settings import Settings
from shared.storage import blob_url
from tests.fakes.azurite import ACCOUNT, ACCOUNT_KEY, Azurite
from tests.fakes.faulty_proxy import Fault, FaultyProxy
from tests.fakes.recording import RecordingAdapter, effects
from tests.ledger.conftest import tables_settings
from tests.ledger.test_conformance import LEASE, T0, entry, key, result
from tests.ledger.test_exactly_once import OffsetClock, action_keys
from tests.ledger.worker import RULES, deliveries

pytestmark = pytest.mark.azurite


def engine_on(ledger: TablesLedger, log: Path, **kwargs: Any) -> tuple[Engine, dict[ActionKind, RecordingAdapter]]:
    adapters = {kind: RecordingAdapter(kind, log) for kind in ActionKind}
    return Engine(load_rules(RULES), ledger, dict(adapters), **kwargs), adapters


# settings and first use -------------------------------------------------------------------------------------------
def test_given_neither_url_nor_connection_string_when_opened_then_a_config_error_names_both_settings() -> None:
    with pytest.raises(ConfigError, match=r"MLREACTOR_STORAGE_ACCOUNT_URL .* MLREACTOR_STORAGE_CONNECTION_STRING"):
        TablesLedger.from_settings(Settings(ledger="tables"))


def test_given_a_prefix_a_table_name_cannot_hold_when_opened_then_a_config_error_names_it(azurite: Azurite) -> None:
    with pytest.raises(ConfigError, match="MLREACTOR_TABLE_PREFIX"):
        TablesLedger.from_settings(tables_settings(azurite, table_prefix="ml-reactor"))


def test_given_a_table_account_url_then_the_blob_url_is_its_sibling_in_any_cloud() -> None:
    assert blob_url("https://acct.table.core.windows.net/") == "https://acct.blob.core.windows.net"
    assert blob_url("https://acct.table.core.chinacloudapi.cn") == "https://acct.blob.core.chinacloudapi.cn"
    with pytest.raises(ConfigError, match=r"ACCOUNT\.table"):
        blob_url("https://acct.blob.core.windows.net")


def test_given_a_fresh_account_when_first_used_then_the_table_and_the_container_are_created(azurite: Azurite) -> None:
    settings = tables_settings(azurite)
    service = TableServiceClient.from_connection_string(azurite.connection_string)
    blobs = BlobServiceClient.from_connection_string(azurite.connection_string)
    table = f"{settings.table_prefix}ledger"
    assert table not in {t.name for t in service.list_tables()}

    ledger = TablesLedger.from_settings(settings)
    created_table = table in {t.name for t in service.list_tables()}
    container_before = blobs.get_container_client(settings.quarantine_container).exists()
    ledger.quarantine(QuarantineRecord(T0, None, None, "not JSON", "{oops"))
    again = TablesLedger.from_settings(settings)  # a second instance on existing storage

    assert created_table and not container_before
    assert blobs.get_container_client(settings.quarantine_container).exists()
    assert [q.raw for q in again.quarantined()] == ["{oops"]


def test_given_an_instance_that_quarantines_nothing_then_the_blob_sdk_is_never_loaded(azurite: Azurite) -> None:
    """First invocation: azure-storage-blob (a third of the ledger's import time) loads with the first quarantine."""
    import subprocess
    import sys

    code = (
        "import sys; from shared.ledger.tables import TablesLedger; from shared.settings import Settings; "
        "from datetime import UTC, datetime, timedelta; "
        "ledger = TablesLedger.from_settings(Settings(ledger='tables', table_prefix='lazyblob', "
        f"storage_connection_string={azurite.connection_string!r})); "
        "ledger.claim_event('k', 'e', datetime.now(UTC), timedelta(minutes=1)); "
        "print('azure.storage.blob' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2], capture_output=True,
                         text=True, check=True).stdout.strip()

    assert out == "False"


# round-trips ------------------------------------------------------------------------------------------------------
def test_given_fresh_events_with_two_actions_when_acted_then_three_round_trips_each_including_the_audit(
    azurite: Azurite, tmp_path: Path
) -> None:
    """claim insert + first action's result + one transaction (last result, outcome, audit); the shipped rules'
    counts are in test_round_trips.py."""
    calls: list[str] = []
    ledger = TablesLedger.from_settings(
        tables_settings(azurite), raw_request_hook=lambda r: calls.append(r.http_request.method)
    )
    engine, _ = engine_on(ledger, tmp_path / "effects.log")
    calls.clear()

    per_event = []
    for delivery in deliveries(5):
        before = len(calls)
        assert engine.handle_delivery(delivery)[0].outcome is Outcome.ACTED
        per_event.append(len(calls) - before)
    before = len(calls)
    assert engine.handle_delivery(deliveries(1)[0])[0].outcome is Outcome.DUPLICATE
    duplicate = len(calls) - before

    assert per_event == [3] * 5
    assert duplicate == 2  # insert (409) + read; a duplicate writes nothing


# faults on the wire -----------------------------------------------------------------------------------------------
@pytest.fixture
def proxy(azurite: Azurite) -> Iterator[FaultyProxy]:
    with FaultyProxy(azurite.table_endpoint) as running:
        yield running


def through(proxy: FaultyProxy, azurite: Azurite, **client_options: Any) -> TablesLedger:
    """A Tables ledger whose table traffic goes through the proxy (blobs go straight to Azurite)."""
    connection = (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
        f"TableEndpoint={proxy.url('/' + ACCOUNT)};BlobEndpoint={azurite.blob_endpoint};"
    )
    options = {"retry_backoff_factor": 0.01, "retry_backoff_max": 0.05, **client_options}
    return TablesLedger.from_settings(tables_settings(azurite, storage_connection_string=connection), **options)


def test_given_storage_keeps_answering_503_when_an_event_arrives_then_it_fails_over_and_no_action_runs(
    proxy: FaultyProxy, azurite: Azurite, tmp_path: Path
) -> None:
    """The engine never performs an action it could not first record as claimed."""
    ledger = through(proxy, azurite)
    engine, adapters = engine_on(ledger, tmp_path / "effects.log")
    proxy.requests.clear()
    proxy.inject(Fault("status", times=100, status=503))

    outcome = engine.handle_delivery(deliveries(1)[0])[0]

    assert outcome.outcome is Outcome.FAILED and outcome.should_raise
    assert "503" in outcome.reason
    assert sum(a.calls for a in adapters.values()) == 0
    # the claim: first try + 3 SDK retries; then the audit entry of the failure, likewise
    assert [(method, status) for method, _, status in proxy.requests] == [("POST", 503)] * 8


def test_given_a_503_and_a_429_with_retry_after_when_claiming_then_the_sdk_retries_and_the_claim_holds(
    proxy: FaultyProxy, azurite: Azurite
) -> None:
    ledger = through(proxy, azurite)
    proxy.inject(Fault("status", times=1, status=503))
    proxy.inject(Fault("status", times=1, status=429, headers={"Retry-After": "1", "retry-after-ms": "10"}))

    claim = ledger.claim_event(key("e1"), "e1", T0, LEASE)

    assert claim.outcome is ClaimOutcome.CLAIMED
    assert [status for _, _, status in proxy.requests][-3:] == [503, 429, 201]


def test_given_a_429_without_retry_after_when_inserting_then_a_transient_error_at_once(
    proxy: FaultyProxy, azurite: Azurite
) -> None:
    """azure-core retries a POST only on 500/503/504 or with Retry-After; the ledger still calls it transient."""
    ledger = through(proxy, azurite)
    proxy.inject(Fault("status", times=1, status=429))

    with pytest.raises(TransientError, match="429"):
        ledger.claim_event(key("e1"), "e1", T0, LEASE)


def test_given_storage_too_slow_when_claiming_then_a_transient_error(proxy: FaultyProxy, azurite: Azurite) -> None:
    ledger = through(proxy, azurite, read_timeout=0.3, retry_total=1)
    proxy.inject(Fault("delay", times=2, seconds=1.0))

    with pytest.raises(TransientError, match="did not answer"):
        ledger.claim_event(key("e1"), "e1", T0, LEASE)


def test_given_the_claims_response_is_lost_when_the_sdk_retries_then_the_claim_is_still_ours(
    proxy: FaultyProxy, azurite: Azurite
) -> None:
    """The insert went through, its 201 was lost, the retry met 409: the holder id shows it is our own claim."""
    ledger = through(proxy, azurite)
    proxy.inject(Fault("lost", times=1))

    claim = ledger.claim_event(key("e1"), "e1", T0, LEASE)

    assert claim.outcome is ClaimOutcome.CLAIMED
    assert ledger.claim_event(key("e1"), "e1", T0, LEASE).outcome is ClaimOutcome.BUSY


def test_given_the_settle_transactions_response_is_lost_when_retried_then_it_is_known_as_ours_and_stored_once(
    proxy: FaultyProxy, azurite: Azurite
) -> None:
    ledger = through(proxy, azurite)
    claim = ledger.claim_event(key("e1"), "e1", T0, LEASE)
    proxy.inject(Fault("lost", times=1, match=lambda method, path: path.endswith("$batch")))

    kept = ledger.settle_event(
        claim.record, "acted", T0, actions=[result("a1", "e1")], audit=entry("e1", "acted")
    )

    assert kept
    assert [e.outcome for e in ledger.audit(event_id="e1")] == ["acted"]
    assert [e.outcome for e in ledger.audit(correlation_id="chain-1")] == ["acted"]
    assert ledger.claim_event(key("e1"), "e1", T0, LEASE).outcome is ClaimOutcome.DONE


def test_given_the_outcome_cannot_be_stored_when_redelivered_after_the_lease_then_nothing_runs_twice(
    proxy: FaultyProxy, azurite: Azurite, tmp_path: Path
) -> None:
    """Both actions ran; storing the outcome (with the last result) failed. The delivery fails; the redelivery
    after the lease skips the recorded action and finds the unrecorded one through the adapter's resumed lookup."""
    log = tmp_path / "effects.log"
    ledger = through(proxy, azurite)
    engine, _ = engine_on(ledger, log, lease=timedelta(seconds=30))
    proxy.inject(Fault("status", times=4, match=lambda method, path: path.endswith("$batch")))

    first = engine.handle_delivery(deliveries(1)[0])[0]
    later, _ = engine_on(ledger, log, lease=timedelta(seconds=30), clock=OffsetClock(timedelta(seconds=30)))
    second = later.handle_delivery(deliveries(1)[0])[0]

    assert first.outcome is Outcome.FAILED and "cannot record acted" in first.reason
    assert second.outcome is Outcome.ACTED
    assert [a.status for a in second.actions] == ["skipped", "done"]
    assert effects(log) == Counter({k: 1 for k in action_keys(0)})
