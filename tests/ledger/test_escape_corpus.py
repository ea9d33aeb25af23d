"""The escape corpus: payloads and situations that used to raise out of the engine (leaving the event in progress, so
Event Grid retried it for 24 h). Every element gets an answer, nothing is left in progress; on both real ledgers.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.actions import ActionKind
from shared.adapters.dryrun import DryRunAdapter
from shared.adapters.notify import NotifyAdapter
from shared.engine import Engine
from shared.ledger.port import Ledger
from shared.ledger.sqlite import SqliteLedger
from shared.outcomes import Outcome
from shared.reactions import Rules, parse_rules
from shared.settings import Settings
from tests.conftest import WORKSPACE, delivery
from tests.ledger.conftest import tables_settings

BIG = "v" * 70_000


def rules() -> Rules:
    return parse_rules({
        "version": 1, "allowed_workspaces": [WORKSPACE],
        "channels": {"broken": {"type": "teams", "url_setting": "MLREACTOR_TEST_BROKEN_URL"}},
        "on_quarantine": {"channels": ["broken"]},
        "rules": [
            {"name": "tag-new", "on": "ModelRegistered",
             "do": [{"tag_model": {"set": {"seen": "{{ model.tags.big }}"}}}]},
            {"name": "retrain", "on": "DatasetDriftDetected", "when": {"drift_coefficient_above": 0.3},
             "do": [{"run_pipeline": {"component": "retrain:1"}}]},
            {"name": "cannot-render", "on": "RunCompleted", "do": [{"tag_run": {"set": {"x": "{{ no.such.path }}"}}}]},
        ],
    }, "escape corpus")


def sample(name: str, **data: Any) -> dict[str, Any]:
    item = delivery(name)[0]
    item["data"].update(data)
    return item


def deep(levels: int) -> Any:
    value: Any = "bottom"
    for _ in range(levels):
        value = [value]
    return value


def corpus() -> dict[str, Any]:
    registered = sample("model_registered")
    return {
        "json nested 1,000 deep": "[" * 1000 + "]" * 1000,
        "an event whose tags nest 1,000 deep": [sample("model_registered", ModelTags={"deep": deep(1000)})],
        "a lone surrogate in the id": json.dumps([{**registered, "id": "\ud800-e1"}]),
        "a lone surrogate in a tag value": json.dumps([sample("model_registered", ModelTags={"area": "\udc00x"})]),
        "a lone surrogate in a key": json.dumps([sample("model_registered", ModelTags={"\ud83d": "x"})]),
        "a 70,000-character tag value": [
            sample("model_registered", ModelTags={"big": BIG, "mlreactor.correlation": BIG})],
        "a 70,000-character id that cannot parse": [{**registered, "id": "i" * 70_000, "data": "not an object"}],
        "a NaN drift coefficient": json.dumps(delivery("dataset_drift_detected")).replace("0.8350349068479208", "NaN"),
        "invalid UTF-8": b"[{\"id\": \"\xff\xfe\"}]",
        "not JSON": "{{{{",
        "a quarantine told to a malformed webhook URL": [sample("run_completed")],
    }


def assert_nothing_in_progress(ledger: Ledger, tmp_path: Path) -> None:
    if isinstance(ledger, SqliteLedger):
        with sqlite3.connect(tmp_path / "ledger.sqlite3") as db:
            statuses = {row[0] for row in db.execute("SELECT status FROM events")}
    else:
        table = ledger._table  # type: ignore[attr-defined]  # the raw rows, on purpose
        statuses = {e["status"] for e in table.list_entities() if e.get("record") == "event"}
    assert statuses and "in_progress" not in statuses, statuses


def test_every_element_of_the_escape_corpus_is_answered_and_nothing_is_left_in_progress(
    ledger: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLREACTOR_TEST_BROKEN_URL", "https://[::1/hook")
    parsed = rules()
    adapters: dict[ActionKind, Any] = {kind: DryRunAdapter(kind) for kind in ActionKind}
    adapters[ActionKind.NOTIFY] = NotifyAdapter(Settings(), parsed, ledger)
    engine = Engine(parsed, ledger, adapters)

    answers = {name: engine.handle_delivery(payload) for name, payload in corpus().items()}

    outcomes = {name: [o.outcome for o in got] for name, got in answers.items()}
    assert all(len(got) == 1 for got in answers.values()), outcomes
    acted = {name for name, got in outcomes.items() if got == [Outcome.ACTED]}
    assert acted == {"a 70,000-character tag value"}, outcomes
    quarantined = {name for name, got in outcomes.items() if got == [Outcome.QUARANTINED]}
    assert quarantined == set(answers) - acted, outcomes
    reasons = {name: got[0].reason for name, got in answers.items()}
    # 3.11's json gives up on the text ("nested too deep"); 3.13's reads it and the depth check names the level
    assert any(words in reasons["json nested 1,000 deep"] for words in ("nested too deep", "nested deeper than 32"))
    assert "nested deeper than 32 levels" in reasons["an event whose tags nest 1,000 deep"]
    assert "lone surrogate" in reasons["a lone surrogate in the id"]
    assert "DriftCoefficient" in reasons["a NaN drift coefficient"]
    told_ops = answers["a quarantine told to a malformed webhook URL"][0].actions
    (told,) = [a for a in told_ops if a.rule == "on_quarantine"]
    assert told.status == "failed" and "is malformed" in told.detail
    raws = [q.raw for q in ledger.quarantined()]
    assert any("i" * 70_000 in raw for raw in raws), "the raw payload is kept whole in the quarantine blob"
    assert_nothing_in_progress(ledger, tmp_path)


def test_given_the_ledger_unavailable_when_a_poison_payload_comes_then_it_fails_to_be_redelivered(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    poison = "[" * 1000 + "]" * 1000
    if backend == "sqlite":
        path = tmp_path / "ledger.sqlite3"
        ledger: Ledger = SqliteLedger(path, timeout=timedelta(seconds=0.2))
        locker = sqlite3.connect(path, isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")  # another process holds the database: the ledger is busy
    else:
        from shared.ledger.tables import TablesLedger
        from tests.fakes.azurite import ACCOUNT, ACCOUNT_KEY
        from tests.fakes.faulty_proxy import Fault, FaultyProxy

        azurite = request.getfixturevalue("azurite")
        proxy = FaultyProxy(azurite.table_endpoint).start()
        request.addfinalizer(proxy.stop)
        connection = (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
                      f"TableEndpoint={proxy.url('/' + ACCOUNT)};BlobEndpoint={azurite.blob_endpoint};")
        ledger = TablesLedger.from_settings(tables_settings(azurite, storage_connection_string=connection),
                                            retry_backoff_factor=0.01, retry_backoff_max=0.05)
        proxy.inject(Fault("status", times=1000, status=503))
    engine = Engine(rules(), ledger, {kind: DryRunAdapter(kind) for kind in ActionKind})

    (outcome,) = engine.handle_delivery(poison)
    (sample_outcome,) = engine.handle_delivery([sample("model_registered")])

    assert outcome.outcome is Outcome.FAILED and outcome.should_raise, outcome.reason
    assert "cannot quarantine an unparseable event" in outcome.reason
    assert sample_outcome.outcome is Outcome.FAILED and sample_outcome.should_raise
    if backend == "sqlite":
        locker.execute("ROLLBACK")
        locker.close()
    else:
        proxy.clear()
    (later,) = engine.handle_delivery(poison)  # Event Grid redelivers once the ledger is back
    assert later.outcome is Outcome.QUARANTINED
    ledger.close()
