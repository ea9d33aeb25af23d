"""Engine throughput: 20,000 events (every kind, 10 % duplicates) through the engine with the SQLite ledger and
dry-run adapters, one delivery per event, on one core — beside a floor measured in the same run (JSON parse + model
validation alone, i.e. the least any handler must do).

    python benchmarks/throughput.py [--events 20000]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shared.adapters import build_adapters  # noqa: E402
from shared.engine import Engine  # noqa: E402
from shared.events import parse_delivery  # noqa: E402
from shared.ledger.sqlite import SqliteLedger  # noqa: E402
from shared.reactions import load_rules  # noqa: E402
from shared.settings import Settings  # noqa: E402

SAMPLES = sorted((ROOT / "tests" / "events").glob("*/*.json"))


def deliveries(count: int, seed: int = 7) -> list[str]:
    """``count`` one-event deliveries of every sample kind and schema, ~10 % of them repeats of earlier ones."""
    rng = random.Random(seed)
    templates = [json.loads(p.read_text())[0] for p in SAMPLES]
    out: list[str] = []
    for i in range(count):
        if out and rng.random() < 0.10:
            out.append(rng.choice(out))
            continue
        event = dict(rng.choice(templates))
        event["id"] = f"bench-{i}"
        if "data" in event and isinstance(event["data"], dict):
            data = dict(event["data"])
            for key in ("DataDriftName", "experimentName"):  # vary throttle groups like real monitors
                if key in data:
                    data[key] = f"{data[key]}-{i % 500}"
            event["data"] = data
        out.append(json.dumps([event]))
    return out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    args = parser.parse_args()
    payloads = deliveries(args.events)

    floor: list[float] = []
    for payload in payloads:
        t0 = time.perf_counter()
        parse_delivery(payload)
        floor.append(time.perf_counter() - t0)

    rules = load_rules(ROOT / "reactions.yaml")
    with tempfile.TemporaryDirectory() as state:
        ledger = SqliteLedger(Path(state) / "ledger.sqlite3")
        engine = Engine(rules, ledger, build_adapters(Settings(dry_run=True), rules, ledger))
        latencies: list[float] = []
        outcomes: dict[str, int] = {}
        start = time.perf_counter()
        for payload in payloads:
            t0 = time.perf_counter()
            for outcome in engine.handle_delivery(payload):
                outcomes[outcome.outcome.value] = outcomes.get(outcome.outcome.value, 0) + 1
            latencies.append(time.perf_counter() - t0)
        total = time.perf_counter() - start
        ledger.close()

    rate = len(payloads) / total
    floor_rate = len(payloads) / sum(floor)
    print(f"throughput: {len(payloads)} events, one delivery each, SQLite ledger (WAL), dry-run adapters")
    print(f"outcomes: {', '.join(f'{n} {k}' for k, n in sorted(outcomes.items()))}")
    print(f"{'path':<34} {'events/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'p99.9 ms':>9} {'max ms':>8}")
    for name, values, per_second in (
        ("floor: JSON parse + validation", floor, floor_rate),
        ("engine: the whole way of an event", latencies, rate),
    ):
        p50, p99, p999 = (percentile(values, q) * 1e3 for q in (0.5, 0.99, 0.999))
        print(f"{name:<34} {per_second:>10.0f} {p50:>8.3f} {p99:>8.3f} {p999:>9.3f} {max(values) * 1e3:>8.3f}")
    p99 = percentile(latencies, 0.99) * 1e3
    ok = rate >= 1000 and p99 <= 5
    print(f"\nengine / floor: {rate / floor_rate:.2f}x the floor's rate; goal >= 1000 events/s and p99 <= 5 ms"
          f" -> {'meets the goal' if ok else 'MISSES the goal'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
