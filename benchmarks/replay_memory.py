"""Memory of a long dry run: ``mlreactor replay --json`` over 100,000 events (every sample kind, 100 events a file),
the SQLite ledger and dry-run adapters — RSS sampled while it runs, beside the RSS after the first tenth of the
input, measured in the same run.

Flat means the second 90 % of the input adds (next to) nothing: what dry-run records goes to the ledger, outcomes
are written as they come and only counted. Before, every outcome and every dry-run action stayed in memory
(about 2.7 KiB per action, 674 MiB for 100k events).

    python benchmarks/replay_memory.py [--events 100000] [--per-file 100]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# The shipped rules allow the workspaces of this setting (Bicep sets it in Azure): the samples' workspace.
os.environ.setdefault(
    "MLREACTOR_SUBSCRIBED_WORKSPACES",
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-mlops/providers/"
    "Microsoft.MachineLearningServices/workspaces/mlw-prod",
)

from shared.ops.cli import main  # noqa: E402

SAMPLES = sorted((ROOT / "tests" / "events" / "eventgrid").glob("*.json"))


def rss_mib() -> float:
    """Resident set size now (not the peak): VmRSS from /proc."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status (Linux only)")


def write_deliveries(folder: Path, events: int, per_file: int) -> list[str]:
    """Files of ``per_file`` events each, every one a new event (new id, new model version, new run)."""
    templates = [json.loads(p.read_text())[0] for p in SAMPLES]
    paths = []
    for start in range(0, events, per_file):
        batch = []
        for i in range(start, min(start + per_file, events)):
            event = json.loads(json.dumps(templates[i % len(templates)]))
            event["id"] = f"mem-{i}"
            data = event.get("data") or {}
            for key in ("modelVersion", "ModelVersion"):
                if key in data:
                    data[key] = str(1000 + i)
            for key in ("runId", "RunId"):
                if key in data:
                    data[key] = f"run-{i}"
            for key in ("DataDriftName", "experimentName"):
                if key in data:
                    data[key] = f"{data[key]}-{i % 500}"
            batch.append(event)
        path = folder / f"delivery-{start:07d}.json"
        path.write_text(json.dumps(batch))
        paths.append(str(path))
    return paths


class CountingSink(io.TextIOBase):
    """stdout for the run: counts the JSON lines written, keeps none of them."""

    def __init__(self) -> None:
        self.lines = 0

    def write(self, text: str) -> int:
        self.lines += text.count("\n")
        return len(text)


def main_bench() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--per-file", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mlreactor-mem-") as scratch:
        folder = Path(scratch)
        paths = write_deliveries(folder, args.events, args.per_file)
        sink = CountingSink()
        samples: list[tuple[int, float]] = []
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.25):
                samples.append((sink.lines, rss_mib()))

        before = rss_mib()
        sampler = threading.Thread(target=sample, daemon=True)
        started = time.perf_counter()
        sampler.start()
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(io.StringIO()):
            code = main(["replay", "--json", "--state", str(folder / "state"), *paths])
        done.set()
        sampler.join()
        elapsed = time.perf_counter() - started
        after = rss_mib()
    assert code == 0 and sink.lines == args.events, (code, sink.lines)
    tenth = next(rss for lines, rss in samples if lines >= args.events // 10)
    print(f"replay --json of {args.events:,} events in {len(paths):,} files: {elapsed:.1f} s "
          f"({args.events / elapsed:,.0f} events/s), SQLite ledger, dry-run")
    print(f"{'point':<28}{'events':>10}{'RSS MiB':>10}")
    print(f"{'before':<28}{0:>10,}{before:>10.1f}")
    print(f"{'after the first tenth':<28}{args.events // 10:>10,}{tenth:>10.1f}")
    print(f"{'peak while running':<28}{'':>10}{max(r for _, r in samples):>10.1f}")
    print(f"{'after':<28}{args.events:>10,}{after:>10.1f}")
    growth = (after - tenth) * 1024 * 1024 / (args.events - args.events // 10)
    print(f"growth over the last 90 %: {after - tenth:+.1f} MiB = {growth:,.0f} bytes/event "
          f"(was ~2,800 bytes/event: every dry-run action and outcome kept)")


if __name__ == "__main__":
    main_bench()
