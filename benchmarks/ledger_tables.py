"""Ledger throughput and round-trips: the Tables ledger on Azurite beside the SQLite ledger, in the same run.

Each run sends distinct ModelRegistered events (each one delivery, two actions: tag_model then notify, recording
adapters, no faults — the happy path) through the real engine in 1 and in 4 processes sharing one ledger. It prints
acted events per second (wall time from a common start — every worker has opened the ledger and waits at a
barrier — to the last worker's last event), the ledger calls per acted event (on SQLite each is one transaction)
and, for Tables, the HTTP round-trips per acted event counted on the wire by an azure-core ``raw_request_hook``.

    npm ci   # once: Azurite into node_modules/
    python benchmarks/ledger_tables.py [--events 400]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fakes.azurite import Azurite  # noqa: E402


def run(backend: str, processes: int, events: int, azurite: Azurite, workdir: Path) -> dict[str, Any]:
    name = uuid.uuid4().hex[:10]
    config: dict[str, Any] = {"backend": backend, "events": events, "log": str(workdir / f"{name}.log")}
    if backend == "sqlite":
        config["sqlite_path"] = str(workdir / f"{name}.sqlite3")
    else:
        config["tables"] = {
            "storage_connection_string": azurite.connection_string, "table_prefix": f"b{name}",
            "quarantine_container": f"b-{name}",
        }
    barrier = workdir / f"{name}-barrier"
    barrier.mkdir()
    config["barrier"] = str(barrier)
    workers = []
    for n in range(processes):
        mine = {**config, "order": list(range(n, events, processes)), "result": str(workdir / f"{name}-{n}.json")}
        path = workdir / f"{name}-{n}.config.json"
        path.write_text(json.dumps(mine))
        workers.append(subprocess.Popen(
            [sys.executable, "-m", "tests.ledger.worker", str(path)], cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        ))
    deadline = time.monotonic() + 120
    while len(list(barrier.glob("ready-*"))) < processes:
        if time.monotonic() > deadline or any(w.poll() is not None for w in workers):
            raise SystemExit(f"{backend} workers did not get ready")
        time.sleep(0.01)
    (barrier / "go").touch()
    if any(w.wait(timeout=300) for w in workers):
        raise SystemExit(f"a {backend} worker failed")
    results = [json.loads((workdir / f"{name}-{n}.json").read_text()) for n in range(processes)]
    acted = sum(r["outcomes"].get("acted", 0) for r in results)
    if acted != events:
        raise SystemExit(f"{backend}: {acted} of {events} events acted — not the happy path")
    wall = max(r["ended"] for r in results) - min(r["started"] for r in results)
    return {
        "backend": backend, "processes": processes, "events_per_s": events / wall,
        "calls": sum(r["ledger_calls"] for r in results) / acted,
        "round_trips": sum(r["requests"] for r in results) / acted if backend == "tables" else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=400, help="distinct events per run (default 400)")
    args = parser.parse_args()
    rows = []
    with Azurite() as azurite, tempfile.TemporaryDirectory(prefix="ledger-bench-") as tmp:
        for processes in (1, 4):
            for backend in ("sqlite", "tables"):
                rows.append(run(backend, processes, args.events, azurite, Path(tmp)))
    print(f"{args.events} distinct events per run, 2 actions each, happy path (no faults, no duplicates)")
    print(f"{'backend':<8} {'processes':>9} {'events/s':>9} {'ledger calls/event':>19} {'round-trips/event':>18}")
    for row in rows:
        trips = f"{row['round_trips']:.2f}" if row["round_trips"] is not None else "in-process"
        print(f"{row['backend']:<8} {row['processes']:>9} {row['events_per_s']:>9.0f} {row['calls']:>19.2f} "
              f"{trips:>18}")
    tables = [r for r in rows if r["backend"] == "tables"]
    sqlite = [r for r in rows if r["backend"] == "sqlite"]
    for t, s in zip(tables, sqlite, strict=True):
        print(f"{t['processes']} process(es): Tables on Azurite runs at {t['events_per_s'] / s['events_per_s']:.2f}x "
              "the SQLite ledger's events/s")


if __name__ == "__main__":
    main()
