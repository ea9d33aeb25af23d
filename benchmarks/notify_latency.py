"""Notification cost: failed-run events through the engine with the live notify adapter posting to three local
receivers (Teams card, Slack blocks, signed webhook), beside the same events with notify in dry-run, in one run.
Then a storm: N failures of one experiment inside one throttle window, counting the messages Ops receive.

    python benchmarks/notify_latency.py [--events 200]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shared.actions import ActionKind  # noqa: E402
from shared.adapters.dryrun import DryRunAdapter  # noqa: E402
from shared.adapters.notify import NotifyAdapter  # noqa: E402
from shared.engine import Engine  # noqa: E402
from shared.ledger.sqlite import SqliteLedger  # noqa: E402
from shared.reactions import parse_rules  # noqa: E402
from shared.settings import Settings  # noqa: E402
from tests.fakes.webhook_receiver import WebhookReceiver  # noqa: E402
from tests.notify.conftest import WORKSPACE, ManualClock, event  # noqa: E402


def rules(throttle: bool) -> Any:
    notify: dict[str, Any] = {"channels": ["teams", "slack", "hook"], "message": "run_failed"}
    if throttle:
        notify |= {"throttle_key": "{{ run.experiment_name }}/{{ run.status }}", "throttle_window": "10m"}
    return parse_rules({"allowed_workspaces": [WORKSPACE], "channels": {
        "teams": {"type": "teams", "url_setting": "BENCH_TEAMS"},
        "slack": {"type": "slack", "url_setting": "BENCH_SLACK"},
        "hook": {"type": "webhook", "url_setting": "BENCH_HOOK", "secret_setting": "BENCH_SECRET"},
    }, "rules": [{"name": "page", "on": "RunStatusChanged", "do": [{"notify": notify}]}]}, "bench")


def run(events: int, *, live: bool, throttle: bool, state: Path) -> list[float]:
    ledger = SqliteLedger(state / f"{live}-{throttle}.sqlite3")
    clock = ManualClock()
    spec = rules(throttle)
    adapters: dict[ActionKind, Any] = {kind: DryRunAdapter(kind) for kind in ActionKind}
    if live:
        adapters[ActionKind.NOTIFY] = NotifyAdapter(Settings(allow_http_webhooks=True), spec, ledger, clock=clock)
    engine = Engine(spec, ledger, adapters, clock=clock)
    times = []
    for i in range(events):
        item = event("run_status_changed_failed", event_id=f"e{i}", runId=f"run-{i}")
        start = time.perf_counter()
        outcome = engine.handle(item)
        times.append(time.perf_counter() - start)
        assert outcome.outcome.value == "acted", outcome.reason
        clock.advance(timedelta(seconds=1))
    ledger.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200)
    args = parser.parse_args()
    receivers = {name: WebhookReceiver().start() for name in ("TEAMS", "SLACK", "HOOK")}
    for name, receiver in receivers.items():
        os.environ[f"BENCH_{name}"] = receiver.url()
    os.environ["BENCH_SECRET"] = "bench-secret-0123456789abcdef"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            dry = run(args.events, live=False, throttle=False, state=Path(tmp))
            live = run(args.events, live=True, throttle=False, state=Path(tmp))
            sent = sum(len(r.requests) for r in receivers.values())
            print(f"{args.events} failed runs, 3 channels: median {statistics.median(live) * 1000:.1f} ms/event live "
                  f"({sent} posts) vs {statistics.median(dry) * 1000:.1f} ms dry-run "
                  f"(x{statistics.median(live) / statistics.median(dry):.1f})")
            before = len(receivers["TEAMS"].requests)
            run(args.events, live=True, throttle=True, state=Path(tmp))  # one event per second: all in one window
            print(f"storm: {args.events} failures of one experiment within 10 min -> "
                  f"{len(receivers['TEAMS'].requests) - before} Teams message(s)")
    finally:
        for receiver in receivers.values():
            receiver.stop()


if __name__ == "__main__":
    main()
