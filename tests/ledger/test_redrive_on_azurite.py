"""`mlreactor deadletter redrive` against a real Azurite: Event Grid's dead-letter blobs and the Tables ledger."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.actions import ActionKind
from shared.errors import PermanentError
from shared.ledger.tables import TablesLedger
from shared.ops.cli import main
from shared.ops.redrive import DeadLettered, redrive
from tests.conftest import ScriptedAdapter, event
from tests.fakes.azurite import Azurite
from tests.ledger.conftest import tables_settings

pytestmark = pytest.mark.azurite

DEAD_LETTER = {"deadLetterReason": "MaxDeliveryAttemptsExceeded", "deliveryAttempts": 30,
               "lastDeliveryOutcome": "Probation", "publishTime": "2026-11-20T18:41:01Z",
               "lastDeliveryAttemptTime": "2026-11-21T18:41:01Z"}


def dead_letter_container(azurite: Azurite, name: str) -> None:
    """What Event Grid writes: {topic}/{subscription}/{yyyy}/{MM}/{dd}/{HH}/{guid}.json, a JSON array each."""
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    container = service.create_container(name)
    grid = [event("model_registered") | DEAD_LETTER, event("run_status_changed_failed") | DEAD_LETTER]
    cloud = [event("model_deployed", "cloudevents") | {k.lower(): v for k, v in DEAD_LETTER.items()}]
    container.upload_blob("MLW-PROD/ON-MODEL-REGISTERED/2026/11/21/18/a1.json", json.dumps(grid))
    container.upload_blob("MLW-PROD/ON-MODEL-DEPLOYED/2026/11/21/19/b2.json", json.dumps(cloud))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> list[dict[str, object]]:
    assert main(list(argv)) == 0
    out = capsys.readouterr().out
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_dead_lettered_blobs_are_redriven_once_and_a_second_redrive_is_all_duplicates(
    azurite: Azurite, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    settings = tables_settings(azurite)
    monkeypatch.setenv("MLREACTOR_LEDGER", "tables")
    monkeypatch.setenv("MLREACTOR_STORAGE_CONNECTION_STRING", azurite.connection_string)
    monkeypatch.setenv("MLREACTOR_TABLE_PREFIX", settings.table_prefix)
    monkeypatch.setenv("MLREACTOR_QUARANTINE_CONTAINER", settings.quarantine_container)
    container = f"dl-{settings.table_prefix}"
    dead_letter_container(azurite, container)

    planned = run(capsys, "deadletter", "redrive", "--container", container, "--json")  # without --live: plans
    assert [r["outcome"] for r in planned] == ["planned"] * 3

    first = run(capsys, "deadletter", "redrive", "--container", container, "--live", "--json")
    assert [(r["event_id"], r["outcome"]) for r in first] == [
        ("7b2e4c1a-002f-001b-66ab-eeb76e069632", "acted"),
        ("831e1650-001e-001b-66ab-eeb76e069631", "acted"),
        ("9a0f7d2b-004b-001b-66ab-eeb76e069634", "acted"),
    ]
    assert {r["dead_letter_reason"] for r in first} == {"MaxDeliveryAttemptsExceeded"}
    assert first[0]["origin"] == "MLW-PROD/ON-MODEL-DEPLOYED/2026/11/21/19/b2.json"

    second = run(capsys, "deadletter", "redrive", "--container", container, "--live", "--json")
    assert [r["outcome"] for r in second] == ["duplicate"] * 3


def test_a_quarantined_event_redriven_from_the_tables_ledger_runs_only_what_failed(azurite: Azurite) -> None:
    from shared.engine import Engine
    from tests.conftest import ROOT, load_rules

    ledger = TablesLedger.from_settings(tables_settings(azurite))
    adapters = {kind: ScriptedAdapter(kind) for kind in ActionKind}
    engine = Engine(load_rules(ROOT / "reactions.yaml"), ledger, dict(adapters))
    adapters[ActionKind.RUN_PIPELINE].fail_next(PermanentError("403 on workspace mlw-prod"))
    (outcome,) = engine.handle_delivery(json.dumps([event("model_registered")]))
    assert outcome.outcome.value == "quarantined"
    (record,) = ledger.quarantined()
    assert json.loads(record.raw)["id"] == "831e1650-001e-001b-66ab-eeb76e069631", "the payload as received"

    (result,) = redrive(engine, [DeadLettered("quarantine", record.raw, record.reason)], reopen=True)

    assert result.outcome == "acted"
    assert len(adapters[ActionKind.TAG_MODEL].executed) == 1 and len(adapters[ActionKind.RUN_PIPELINE].executed) == 1
