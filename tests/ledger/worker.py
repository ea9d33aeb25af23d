"""One Function instance in a process of its own: replays deliveries through the real engine on a shared ledger.

``python -m tests.ledger.worker CONFIG.json`` — used by the concurrency and crash tests and by the benchmark. A
delivery whose outcome asks for redelivery goes back to the end of this worker's queue, as Event Grid would retry it.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import sys
import time
from collections import Counter, deque
from collections.abc import Callable
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


class CountingLedger:
    """Counts calls on the ledger port (on SQLite each call is one transaction), for the benchmark."""

    def __init__(self, inner: Ledger) -> None:
        self.inner = inner
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return attr(*args, **kwargs)

        return counted


def open_ledger(config: dict[str, Any], on_request: Callable[[Any], None] | None = None) -> Ledger:
    """The ledger the config names; ``on_request`` sees every HTTP request the Tables ledger sends."""
    if config["backend"] == "sqlite":
        return SqliteLedger(Path(config["sqlite_path"]))
    from shared.ledger.tables import TablesLedger

    settings = Settings.model_validate({"ledger": "tables", **config["tables"]})
    return TablesLedger.from_settings(settings, **({"raw_request_hook": on_request} if on_request else {}))


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
    requests = [0]
    ledger = CountingLedger(open_ledger(config, lambda _: requests.__setitem__(0, requests[0] + 1)))
    engine = build_engine(config, ledger)  # type: ignore[arg-type]
    queue = deque(config["order"])
    outcomes: Counter[str] = Counter()
    handled = 0
    ledger.calls, requests[0] = 0, 0  # count the events' work, not opening the ledger
    if "barrier" in config:  # start together with the other workers (interpreter start-up times differ)
        barrier = Path(config["barrier"])
        (barrier / f"ready-{os.getpid()}").touch()
        while not (barrier / "go").exists():
            time.sleep(0.005)
    started = time.time()
    while queue and handled < config.get("max_deliveries", 100_000):
        index = queue.popleft()
        handled += 1
        results = engine.handle_delivery(made[index])
        outcomes.update(r.outcome.value for r in results)
        if any(r.should_raise for r in results):
            queue.append(index)
    ended = time.time()
    counted = {"ledger_calls": ledger.calls, "requests": requests[0]}
    ledger.close()
    Path(config["result"]).write_text(json.dumps({
        "handled": handled, "left": len(queue), "outcomes": outcomes, "started": started, "ended": ended, **counted,
    }))


if __name__ == "__main__":
    main(sys.argv[1])
