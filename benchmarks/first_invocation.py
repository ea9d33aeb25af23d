"""First invocation: process start → first decision, on the production layout, beside the import floor.

Each run is a fresh interpreter that does what the Functions worker does on a cold instance: import
``function_app``, build the engine on the first event (Tables ledger on Azurite, notify live to a local receiver),
and decide a failed run (notify-failed-runs: two channels). Phases, in order: interpreter start-up, imports
(``function_app``), settings + rules, ledger (client + table check), adapters, the first event (claim, notify,
settle). Azure ML events add the SDK's own import (``azure.ai.ml``), timed in the same run in a separate fresh
interpreter — the credential is part of that path and is not measured here (see the README). Medians of N runs.

    python benchmarks/first_invocation.py [--runs 5]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fakes.azurite import Azurite  # noqa: E402
from tests.fakes.webhook_receiver import WebhookReceiver  # noqa: E402
from tests.ledger.shipped import CHANNEL_SETTINGS, delivery  # noqa: E402

PROBE = """
import json, sys, time
marks = {"started": time.time()}
import function_app
marks["imports"] = time.time()
from shared.settings import get_settings
from shared.reactions import load_rules
settings = get_settings(); rules = load_rules(settings.rules_path)
marks["settings + rules"] = time.time()
from shared.ledger import open_ledger
ledger = open_ledger(settings)
marks["ledger"] = time.time()
from shared.adapters import build_adapters
adapters = build_adapters(settings, rules, ledger)
marks["adapters"] = time.time()
from shared.engine import Engine
engine = Engine(rules, ledger, adapters)
(outcome,) = engine.handle_delivery(sys.argv[1])
marks["first event"] = time.time()
print(json.dumps({"marks": marks, "outcome": outcome.outcome.value, "heavy": "azure.ai.ml" in sys.modules}))
"""
FLOOR = "import time; t = time.time(); import azure.functions; print(time.time() - t)"
SDK = "import time; t = time.time(); import azure.ai.ml; print(time.time() - t)"
PHASES = ("interpreter", "imports", "settings + rules", "ledger", "adapters", "first event")


def probe(azurite: Azurite, receiver: WebhookReceiver, n: int) -> dict[str, float]:
    name = uuid.uuid4().hex[:10]
    env = {
        **os.environ, "PYTHONPATH": str(ROOT), "MLREACTOR_LEDGER": "tables", "MLREACTOR_DRY_RUN": "false",
        "MLREACTOR_STORAGE_CONNECTION_STRING": azurite.connection_string, "MLREACTOR_TABLE_PREFIX": f"f{name}",
        "MLREACTOR_QUARANTINE_CONTAINER": f"f-{name}", "MLREACTOR_ALLOW_HTTP_WEBHOOKS": "true",
        **{setting: receiver.url(f"/{setting.lower()}") for setting in CHANNEL_SETTINGS},
    }
    started = time.time()
    out = subprocess.run([sys.executable, "-c", PROBE, delivery("run_failed", n)], cwd=ROOT, env=env,
                         capture_output=True, text=True, check=True).stdout
    report = json.loads(out.strip().splitlines()[-1])
    if report["outcome"] != "acted":
        raise SystemExit(f"the first event was {report['outcome']}, not acted")
    marks = report["marks"]
    times = [started, *marks.values()]
    phases = dict(zip(PHASES, (b - a for a, b in itertools.pairwise(times)), strict=True))
    phases["total"] = times[-1] - started
    return phases


def seconds(code: str) -> float:
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return float(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    receiver = WebhookReceiver().start()
    with Azurite() as azurite:
        runs = [probe(azurite, receiver, n) for n in range(args.runs)]
    receiver.stop()
    floor = statistics.median(seconds(FLOOR) for _ in range(args.runs))
    sdk = statistics.median(seconds(SDK) for _ in range(args.runs))
    print(f"first invocation, median of {args.runs} fresh processes: Tables ledger on Azurite, notify live "
          "(a failed run: notify-failed-runs, 2 channels)")
    for phase in (*PHASES, "total"):
        print(f"  {phase:<18} {statistics.median(r[phase] for r in runs):>7.3f} s")
    total = statistics.median(r["total"] for r in runs)
    print(f"import floor (azure.functions alone): {floor:.3f} s -> first decision at {total / floor:.1f}x the floor")
    print(f"an Azure ML event adds the SDK's import (azure.ai.ml alone, fresh interpreter): {sdk:.3f} s -> "
          f"~{total + sdk:.2f} s before its first Azure ML call (target <= 1.8 s; before issue 17: 2.48 s measured)")


if __name__ == "__main__":
    main()
