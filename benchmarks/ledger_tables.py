"""What one event costs on the shared ledger, with the shipped rules — and what the purge costs — on Azurite.

1. Round-trips per outcome: distinct deliveries of each kind (``tests/ledger/shipped.py``: versions, deployments,
   experiments and monitors varied so events act) through the real engine on the shipped ``reactions.yaml``, notify
   live to a local receiver, every HTTP request of both SDK clients counted by azure-core's ``raw_request_hook``.
   Beside each: the target of issue 17 and the count before it (measured the same way on the previous code). The
   same deliveries run on the SQLite ledger in the same run: its events/s are the baseline of Tables' events/s.
2. Purge: ``--models`` models x ``--days`` days of settled events (event, 2 action results, audit entry, once_per
   window per model-day) with a third of the days past the retention, purged in runs of a small budget as the timer
   does; the measured rates extrapolate to 16,000 models x 90 days. Azurite's rates are not the service's (its
   documented target is 2,000 entities/s per partition): the extrapolation shows the shape, not a promise.

    npm ci   # once: Azurite into node_modules/
    python benchmarks/ledger_tables.py [--events 20] [--models 200] [--days 3]
"""

from __future__ import annotations

import argparse
import logging
import math
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shared.ledger.port import ActionRecord, ActionStatus, AuditEntry, Ledger  # noqa: E402
from shared.ledger.sqlite import SqliteLedger  # noqa: E402
from shared.ledger.tables import TablesLedger  # noqa: E402
from shared.settings import Settings  # noqa: E402
from tests.fakes.azurite import Azurite  # noqa: E402
from tests.fakes.webhook_receiver import WebhookReceiver  # noqa: E402
from tests.ledger.shipped import channels_to, delivery, shipped_engine  # noqa: E402

#: kind → (label, target, before issue 17: measured on the shipped rules with the previous code)
ROWS: dict[str, tuple[str, str, str]] = {
    "model_registered": ("acted: ModelRegistered", "<= 4", "6"),
    "model_registered_in_chain": ("acted: ModelRegistered in a chain", "-", "6"),
    "model_deployed": ("acted: ModelDeployed, notify 1 channel", "<= 5", "16"),
    "run_failed": ("acted: failed run, notify 2 channels", "<= 6", "21"),
    "drift": ("acted: drift, notify 1 channel (digested)", "-", "19"),
    "drift_again": ("ignored: throttled (window seen)", "-", "5"),
    "run_completed": ("ignored: no rule", "<= 2", "3"),
    "foreign": ("rejected", "<= 2", "2"),
    "unparseable": ("quarantined: unparseable", "-", "4"),
    "duplicate": ("duplicate", "<= 2", "4"),
}
TOTAL_MODELS, TOTAL_DAYS, BUDGET_S = 16_000, 90, 240
ROWS_PER_MODEL_DAY = 5  # event, 2 action results, audit entry, once_per window


def tables_ledger(azurite: Azurite, **options: Any) -> TablesLedger:
    name = uuid.uuid4().hex[:10]
    settings = Settings.model_validate({
        "ledger": "tables", "storage_connection_string": azurite.connection_string, "table_prefix": f"b{name}",
        "quarantine_container": f"b-{name}",
    })
    return TablesLedger.from_settings(settings, **options)


def workload(events: int) -> list[tuple[str, str]]:
    """(kind, payload) in the order they are sent: each drift before its repeat, duplicates of earlier deliveries."""
    sent: list[tuple[str, str]] = []
    for n in range(events):
        for kind in ROWS:
            if kind == "duplicate":
                sent.append((kind, delivery("model_deployed", n)))
            elif kind != "drift_again":
                sent.append((kind, delivery(kind, n)))
                if kind == "drift":
                    sent.append(("drift_again", delivery("drift_again", n)))
    return sent


def round_trips(azurite: Azurite, events: int, tmp: Path) -> tuple[dict[str, list[int]], float, float]:
    requests = [0]
    ledger = tables_ledger(azurite, raw_request_hook=lambda _: requests.__setitem__(0, requests[0] + 1))
    engine = shipped_engine(ledger, tmp / "effects-tables.log")
    engine.handle_delivery(delivery("unparseable", 10**6))  # first use creates the quarantine container
    per_kind: dict[str, list[int]] = {kind: [] for kind in ROWS}
    sent = workload(events)
    start = time.perf_counter()
    for kind, payload in sent:
        before = requests[0]
        engine.handle_delivery(payload)
        per_kind[kind].append(requests[0] - before)
    tables_rate = len(sent) / (time.perf_counter() - start)
    ledger.close()
    sqlite = SqliteLedger(tmp / "ledger.sqlite3")
    engine = shipped_engine(sqlite, tmp / "effects-sqlite.log")
    start = time.perf_counter()
    for _, payload in sent:
        engine.handle_delivery(payload)
    sqlite_rate = len(sent) / (time.perf_counter() - start)
    sqlite.close()
    return per_kind, tables_rate, sqlite_rate


def seed(ledger: Ledger, models: int, days: int, now: datetime) -> int:
    """One settled ModelRegistered per model and day, as the engine stores it; returns the rows written."""
    for day in range(days):
        when = now - timedelta(days=day * 45, hours=1)  # day 0 is recent; later ones are past a 30-day retention
        for m in range(models):
            event_id = f"seed-{day}-{m}"
            key = f"/ws|{event_id}"
            claim = ledger.claim_event(key, event_id, when, timedelta(minutes=2))
            results = [ActionRecord(f"{event_id}-a{i}", key, event_id, "test-new-model", "tag_model",
                                    ActionStatus.DONE, None, "done", None, when) for i in range(2)]
            ledger.record_action(results[0])
            ledger.acquire_throttle(f"once|test-new-model|model-{m}:{day}", key, timedelta(hours=1), when)
            ledger.settle_event(claim.record, "acted", when, actions=results[1:], audit=AuditEntry(
                when, key, event_id, "ModelRegistered", f"models/model-{m}:{day}", "/ws", event_id, "acted", ""))
    return models * days * ROWS_PER_MODEL_DAY


def purge(azurite: Azurite, models: int, days: int) -> dict[str, float]:
    """Two passes, in budgeted runs as the timer makes them: one whose cutoff nothing is older than (the scan
    alone), then the real one (scan + deletes); their difference is the cost of deleting."""
    requests = [0]
    ledger = tables_ledger(azurite, raw_request_hook=lambda _: requests.__setitem__(0, requests[0] + 1))
    ledger.purge_page = 100  # more pages at this small scale, so the budgeted runs stop and resume
    now = datetime.now(UTC)
    rows = seed(ledger, models, days, now)
    expired = models * (days - 1) * ROWS_PER_MODEL_DAY
    figures: dict[str, float] = {"rows": rows, "expired": expired}
    for name, cutoff in (("scan", now - timedelta(days=365)), ("pass", now - timedelta(days=30))):
        requests[0], runs, deleted = 0, 0, 0
        start = time.perf_counter()
        while True:  # the timer's runs, each with a small budget
            runs += 1
            progress = ledger.purge(cutoff, budget=timedelta(seconds=0.5))
            deleted += progress.deleted
            if progress.finished:
                break
        figures |= {f"{name}_s": time.perf_counter() - start, f"{name}_runs": runs,
                    f"{name}_trips": requests[0], f"{name}_deleted": deleted}
    ledger.close()
    if figures["pass_deleted"] != expired or figures["scan_deleted"]:
        raise SystemExit(f"purge deleted {figures['pass_deleted']:.0f} records, expected {expired}")
    figures["scan_rate"] = rows / figures["scan_s"]
    figures["delete_rate"] = expired / max(figures["pass_s"] - figures["scan_s"], 1e-6)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=20, help="distinct deliveries of each kind (default 20)")
    parser.add_argument("--models", type=int, default=200, help="models in the purge measurement (default 200)")
    parser.add_argument("--days", type=int, default=3, help="days of records per model (default 3)")
    args = parser.parse_args()
    logging.getLogger().addHandler(logging.NullHandler())  # records are made as in production, not printed
    receiver = WebhookReceiver().start()
    with Azurite() as azurite, tempfile.TemporaryDirectory(prefix="ledger-bench-") as tmp, channels_to(receiver):
        per_kind, tables_rate, sqlite_rate = round_trips(azurite, args.events, Path(tmp))
        purged = purge(azurite, args.models, args.days)
    receiver.stop()

    print(f"round-trips per event on Azurite, shipped rules, notify live to a local receiver "
          f"({args.events} distinct deliveries of each kind, one instance)")
    print(f"{'outcome':<40} {'median':>6} {'max':>4} {'target':>7} {'before':>7}")
    for kind, (label, target, before) in ROWS.items():
        counts = per_kind[kind]
        print(f"{label:<40} {statistics.median(counts):>6g} {max(counts):>4} {target:>7} {before:>7}")
    print(f"events/s on this workload: Tables on Azurite {tables_rate:.0f}, SQLite {sqlite_rate:.0f} "
          f"(Tables at {tables_rate / sqlite_rate:.2f}x the SQLite ledger's rate)")

    p = purged
    print(f"\npurge on Azurite: {args.models} models x {args.days} days = {p['rows']:.0f} rows, {p['expired']:.0f} "
          f"expired; scan-only pass {p['scan_s']:.1f} s ({_runs(p['scan_runs'])}, {p['scan_rate']:.0f} rows/s), "
          f"real pass {p['pass_s']:.1f} s ({_runs(p['pass_runs'])}, {p['pass_trips']:.0f} round-trips, "
          f"{p['delete_rate']:.0f} deletions/s beyond the scan)")
    total = TOTAL_MODELS * TOTAL_DAYS * ROWS_PER_MODEL_DAY
    daily = TOTAL_MODELS * ROWS_PER_MODEL_DAY
    seconds = total / p["scan_rate"] + daily / p["delete_rate"]
    print(f"extrapolated to {TOTAL_MODELS:,} models x {TOTAL_DAYS} days ({ROWS_PER_MODEL_DAY} rows a model-day): "
          f"{total:,} rows scanned, {daily:,} deleted a day -> one pass ~{seconds / 60:.0f} min at Azurite's rates "
          f"= {_runs(math.ceil(seconds / BUDGET_S), 'hourly run')} of {BUDGET_S} s each, resumed run to run (before "
          "issue 17: one unbounded run holding every expired row in memory, past the 300 s functionTimeout)")


def _runs(count: float, what: str = "run") -> str:
    """``1 run``, ``2 runs``: a pass needs whole runs, so a part of one counts as one (the caller rounds up)."""
    return f"{count:.0f} {what}{'' if count == 1 else 's'}"


if __name__ == "__main__":
    main()
