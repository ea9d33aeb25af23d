"""Engine throughput on the shipped rules: 100,000 events through the embedded engine (SQLite ledger, dry-run
adapters), one delivery per event, on one core — beside a floor measured in the same run (JSON parse + model
validation alone, i.e. the least any handler must do).

The deliveries are ``tests/ledger/shipped.py``'s: model versions, deployments, experiments and monitors vary so
events act as in production (ModelRegistered, ModelDeployed, failed runs, drift and its throttled repeat, runs no
rule wants, a foreign workspace, unparseable payloads), plus 10 % duplicates. Memory: the process's resident set
after each tenth of the events (flat = no growth with the number of events handled).

    python benchmarks/throughput.py [--events 100000]
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shared.adapters import build_adapters  # noqa: E402
from shared.engine import Engine  # noqa: E402
from shared.errors import EventParseError  # noqa: E402
from shared.events import parse_delivery  # noqa: E402
from shared.ledger.sqlite import SqliteLedger  # noqa: E402
from shared.reactions import load_rules  # noqa: E402
from shared.settings import Settings  # noqa: E402
from tests.ledger.shipped import delivery  # noqa: E402

MIX = ("model_registered", "model_deployed", "run_failed", "drift", "drift_again", "run_completed", "foreign",
       "model_registered_in_chain", "unparseable")


def deliveries(count: int, seed: int = 7) -> list[str]:
    """``count`` one-event deliveries of the shipped workload's kinds, ~10 % of them repeats of earlier ones."""
    rng = random.Random(seed)
    out: list[str] = []
    for i in range(count):
        if out and rng.random() < 0.10:
            out.append(rng.choice(out))
            continue
        kind = MIX[i % len(MIX)]
        out.append(delivery(kind, i - 1 if kind == "drift_again" else i))  # drift_again repeats the drift before
    return out


def rss_mib() -> float:
    """The resident set now (Linux /proc), not the peak: growth shows as a rising line."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    args = parser.parse_args()
    logging.getLogger().addHandler(logging.NullHandler())  # records are made as in production, not printed
    payloads = deliveries(args.events)

    floor: list[float] = []
    for payload in payloads:
        t0 = time.perf_counter()
        with contextlib.suppress(EventParseError):  # the unparseable ones: finding out is the floor's work too
            parse_delivery(payload)
        floor.append(time.perf_counter() - t0)

    rules = load_rules(ROOT / "reactions.yaml")
    with tempfile.TemporaryDirectory() as state:
        ledger = SqliteLedger(Path(state) / "ledger.sqlite3")
        engine = Engine(rules, ledger, build_adapters(Settings(dry_run=True), rules, ledger))
        latencies: list[float] = []
        outcomes: dict[str, int] = {}
        memory: list[float] = []
        tenth = max(1, len(payloads) // 10)
        start, cpu_start = time.perf_counter(), time.process_time()
        for n, payload in enumerate(payloads):
            t0 = time.perf_counter()
            for outcome in engine.handle_delivery(payload):
                outcomes[outcome.outcome.value] = outcomes.get(outcome.outcome.value, 0) + 1
            latencies.append(time.perf_counter() - t0)
            if n % tenth == tenth - 1:
                memory.append(rss_mib())
        total, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        ledger.close()

    rate = len(payloads) / total
    floor_rate = len(payloads) / sum(floor)
    print(f"throughput: {len(payloads)} events of the shipped workload, shipped rules, one delivery each, SQLite "
          "ledger (WAL), dry-run adapters")
    print(f"outcomes: {', '.join(f'{n} {k}' for k, n in sorted(outcomes.items()))}")
    print(f"{'path':<34} {'events/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'p99.9 ms':>9} {'max ms':>8}")
    for name, values, per_second in (
        ("floor: JSON parse + validation", floor, floor_rate),
        ("engine: the whole way of an event", latencies, rate),
    ):
        p50, p99, p999 = (percentile(values, q) * 1e3 for q in (0.5, 0.99, 0.999))
        print(f"{name:<34} {per_second:>10.0f} {p50:>8.3f} {p99:>8.3f} {p999:>9.3f} {max(values) * 1e3:>8.3f}")
    p99 = percentile(latencies, 0.99) * 1e3
    growth = memory[-1] - memory[0] if memory else 0.0
    print(f"CPU time: {cpu / len(payloads) * 1e3:.3f} ms an event -> {len(payloads) / cpu:.0f} events per CPU-second"
          f" (wall-clock events/s fall below it when other processes share the cores; load {os.getloadavg()[0]:.1f})")
    print("resident MiB after each tenth: " + " ".join(f"{m:.0f}" for m in memory)
          + f" (growth after the first tenth: {growth:+.1f} MiB)")
    ok = rate >= 2000 and p99 <= 2 and growth <= 10
    print(f"\nengine / floor: {rate / floor_rate:.2f}x the floor's rate; goal >= 2000 events/s, p99 <= 2 ms and "
          f"flat memory (<= 10 MiB growth) -> {'meets the goal' if ok else 'MISSES the goal'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
