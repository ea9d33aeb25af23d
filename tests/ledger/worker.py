"""One Function instance in a process of its own: replays deliveries through the real engine on a shared ledger.

``python -m tests.ledger.worker CONFIG.json`` — used by the concurrency and crash tests. A delivery whose outcome
asks for redelivery goes back to the end of this worker's queue, as Event Grid would retry it.
"""

from __future__ import annotations

import copy
import json
import logging
import sys
from collections import Counter, deque
from datetime import timedelta
from pathlib import Path
from typing import Any

from shared.actions import ActionAdapter, ActionKind
from shared.engine import Engine
from shared.ledger.port import Ledger
from shared.ledger.sqlite import SqliteLedger
from shared.reactions import load_rules
from shared.settings import Settings
from tests.fakes.recording import RecordingAdapter

HERE = Path(__file__).parent
RULES = HERE / "rules.yaml"
SAMPLE = HERE.parent / "events" / "eventgrid" / "model_registered.json"


def deliveries(count: int) -> list[list[dict[str, Any]]]:
    """``count`` distinct ModelRegistered deliveries (one event each) from the documented sample."""
    sample = json.loads(SAMPLE.read_text())[0]
    made = []
    for n in range(count):
        event = copy.deepcopy(sample)
        event["id"] = f"evt-{n:04d}-{sample['id']}"
        event["subject"] = f"models/m{n}:1"
        event["data"]["ModelName"] = f"m{n}"
        made.append([event])
    return made


def open_ledger(config: dict[str, Any]) -> Ledger:
    """The ledger the config names."""
    if config["backend"] == "sqlite":
        return SqliteLedger(Path(config["sqlite_path"]))
    from shared.ledger.tables import TablesLedger

    settings = Settings.model_validate({"ledger": "tables", **config["tables"]})
    return TablesLedger.from_settings(settings)


def build_engine(config: dict[str, Any], ledger: Ledger) -> Engine:
    log = Path(config["log"])
    adapters: dict[ActionKind, ActionAdapter] = {}
    hang = config.get("hang") or {}
    for kind in ActionKind:
        hangs = hang.get("kind") == kind.value
        adapters[kind] = RecordingAdapter(
            kind, log, fail_rate=config.get("fail_rate", 0.0), seed=config.get("seed", 0),
            hang_marker=Path(hang["marker"]) if hangs else None, hang_after_effect=hangs and hang["after_effect"],
        )
    return Engine(
        load_rules(RULES), ledger, adapters, lease=timedelta(seconds=config.get("lease_seconds", 120)),
        budget=timedelta(seconds=20),
    )


def main(path: str) -> None:
    logging.basicConfig(level=logging.ERROR)  # injected faults are expected: keep the test output readable
    config = json.loads(Path(path).read_text())
    made = deliveries(config["events"])
    ledger = open_ledger(config)
    engine = build_engine(config, ledger)
    queue = deque(config["order"])
    outcomes: Counter[str] = Counter()
    handled = 0
    while queue and handled < 100_000:  # a delivery that never completes ends the worker, with it left in the queue
        index = queue.popleft()
        handled += 1
        results = engine.handle_delivery(made[index])
        outcomes.update(r.outcome.value for r in results)
        if any(r.should_raise for r in results):
            queue.append(index)
    ledger.close()
    Path(config["result"]).write_text(json.dumps({"left": len(queue), "outcomes": outcomes}))


if __name__ == "__main__":
    main(sys.argv[1])
