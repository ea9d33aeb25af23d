"""Cold start: ``import function_app`` in a fresh interpreter, beside ``azure.functions`` and ``azure.ai.ml`` alone.

Each figure is the median of N fresh interpreters (import time measured inside the interpreter, so interpreter
start-up is excluded; peak RSS is the process's maximum resident set). Goal: function_app within 1.5x the time of
azure.functions alone and at most 25 MiB more RSS, with no heavy SDK loaded.

    python benchmarks/cold_start.py [--runs 7]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ["azure.ai.ml", "azure.devops", "azure.identity", "azure.data.tables", "azure.eventgrid"]
PROBE = """
import json, resource, sys, time
t0 = time.perf_counter()
{statement}
elapsed = time.perf_counter() - t0
rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({{"seconds": elapsed, "rss_mib": rss_mib, "heavy": [m for m in {heavy!r} if m in sys.modules]}}))
"""
CASES = {
    "bare interpreter": "pass",
    "import azure.functions": "import azure.functions",
    "import function_app": "import function_app",
    "import azure.ai.ml": "import azure.ai.ml",
}


def measure(statement: str, runs: int) -> dict[str, object]:
    samples = []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", PROBE.format(statement=statement, heavy=HEAVY)],
            cwd=ROOT, capture_output=True, text=True, check=True,
        ).stdout
        samples.append(json.loads(out.strip().splitlines()[-1]))
    return {
        "seconds": statistics.median(s["seconds"] for s in samples),
        "rss_mib": statistics.median(s["rss_mib"] for s in samples),
        "heavy": samples[-1]["heavy"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    results = {name: measure(stmt, args.runs) for name, stmt in CASES.items()}
    print(f"cold start, median of {args.runs} fresh interpreters (Python {sys.version.split()[0]})")
    print(f"{'what':<24} {'import s':>9} {'peak RSS MiB':>13}  heavy SDKs loaded")
    for name, r in results.items():
        heavy = ", ".join(r["heavy"]) or "-"  # type: ignore[arg-type]
        print(f"{name:<24} {r['seconds']:>9.3f} {r['rss_mib']:>13.1f}  {heavy}")
    app, base = results["import function_app"], results["import azure.functions"]
    ratio = app["seconds"] / base["seconds"]  # type: ignore[operator]
    extra = app["rss_mib"] - base["rss_mib"]  # type: ignore[operator]
    ok = ratio <= 1.5 and extra <= 25 and not app["heavy"]
    print(f"\nfunction_app / azure.functions: {ratio:.2f}x time (goal <= 1.5x), {extra:+.1f} MiB RSS (goal <= 25)"
          f" -> {'meets the goal' if ok else 'MISSES the goal'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
