"""Dry-run is honest: it keeps nothing in memory, records what it would have sent as the action's result, and
applies the notify gate (flapping, throttle windows, digests) exactly as live — so a dry replay shows what Ops
would really receive."""

from __future__ import annotations

import json
from pathlib import Path

from shared.actions import ActionKind
from shared.adapters import build_adapters
from shared.adapters.dryrun import DryRunAdapter
from shared.engine import Engine
from shared.ledger.sqlite import SqliteLedger
from shared.outcomes import EventOutcome
from shared.reactions import Rules
from shared.settings import Settings
from tests.conftest import FakeClock, event


def failed_run(n: int, experiment: str = "nightly", run: str | None = None) -> str:
    raw = event("run_status_changed_failed", id=f"failed-{n}")
    raw["data"]["experimentName"] = experiment
    raw["data"]["runId"] = run or f"run-{n}"
    return json.dumps([raw])


def notify_detail(outcome: EventOutcome) -> str:
    (notify,) = [a for a in outcome.actions if a.kind == "notify"]
    return notify.detail


def test_dry_run_notify_applies_throttle_windows_and_digests(
    tmp_path: Path, shipped_rules: Rules, clock: FakeClock
) -> None:
    ledger = SqliteLedger(tmp_path / "ledger.sqlite3")
    engine = Engine(shipped_rules, ledger, build_adapters(Settings(dry_run=True), shipped_rules, ledger, clock=clock),
                    clock=clock)
    try:
        first = engine.handle_delivery(failed_run(1))[0]
        held = [engine.handle_delivery(failed_run(n))[0] for n in (2, 3)]
        clock.advance(minutes=11)
        after = engine.handle_delivery(failed_run(4))[0]
    finally:
        ledger.close()
    assert notify_detail(first).startswith("dry-run: would notify ops-teams, ops-slack: ")
    assert all(notify_detail(o).startswith("held back: folded into the digest of 'nightly/Failed'") for o in held)
    assert notify_detail(after).startswith("dry-run: would notify ops-teams, ops-slack: ")
    assert notify_detail(after).endswith("(digest of 2 held back)")
    (notify,) = [a for a in after.actions if a.kind == "notify"]
    assert notify.data == {"channels": {"ops-teams": "dry-run", "ops-slack": "dry-run"}, "digest": 2}


def test_dry_run_notify_pages_a_flapping_run_once_per_state(
    tmp_path: Path, shipped_rules: Rules, clock: FakeClock
) -> None:
    ledger = SqliteLedger(tmp_path / "ledger.sqlite3")
    engine = Engine(shipped_rules, ledger, build_adapters(Settings(dry_run=True), shipped_rules, ledger, clock=clock),
                    clock=clock)
    try:
        first = engine.handle_delivery(failed_run(1, experiment="a", run="same-run"))[0]
        clock.advance(minutes=30)
        again = engine.handle_delivery(failed_run(2, experiment="a", run="same-run"))[0]
    finally:
        ledger.close()
    assert notify_detail(first).startswith("dry-run: would notify")
    assert notify_detail(again).startswith("held back: already notified for this state since")


def test_the_dry_run_adapter_keeps_nothing_and_answers_with_the_rendered_parameters(
    tmp_path: Path, shipped_rules: Rules
) -> None:
    ledger = SqliteLedger(tmp_path / "dry.sqlite3")
    adapters = {kind: DryRunAdapter(kind) for kind in ActionKind}
    engine = Engine(shipped_rules, ledger, dict(adapters))
    try:
        (outcome,) = engine.handle_delivery(json.dumps([event("model_registered")]))
        (record,) = [a for a in outcome.actions if a.kind == "run_pipeline"]
        stored = ledger.get_action(record.key, "831e1650-001e-001b-66ab-eeb76e069631")
    finally:
        ledger.close()
    assert vars(adapters[ActionKind.RUN_PIPELINE]) == {"kind": ActionKind.RUN_PIPELINE}, "no list of what it did"
    assert stored is not None and stored.data["params"]["job_yaml"].endswith("offline-test.yml")
    assert record.data == stored.data, "the outcome and the ledger carry the same structured result"


def test_what_dry_run_records_is_bounded_however_large_the_event_data(tmp_path: Path, shipped_rules: Rules) -> None:
    ledger = SqliteLedger(tmp_path / "dry.sqlite3")
    engine = Engine(shipped_rules, ledger, {kind: DryRunAdapter(kind) for kind in ActionKind})
    raw = event("model_registered")
    raw["data"]["ModelName"] = "m" * 70_000
    try:
        (outcome,) = engine.handle_delivery(json.dumps([raw]))
    finally:
        ledger.close()
    (tagged,) = [a for a in outcome.actions if a.kind == "tag_model"]
    assert len(json.dumps(tagged.data)) < 4_000
    assert tagged.data["params"]["model"].endswith("…")
