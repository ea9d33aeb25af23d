"""First invocation: process start → first decision, on the production layout, beside the import floor.

Each run is a fresh interpreter that does what the Functions worker does on a cold instance: import
``function_app``, build the engine (Tables ledger on Azurite, every adapter live against a local fake: Azure ML
over HTTPS, notify to a local receiver) and decide one event. Two first events:

- a new model version (test-new-model: tag_model + run_pipeline on Azure ML; the tag settle pause,
  ``MLREACTOR_AZUREML_TAG_SETTLE_SECONDS``, is paid only when a concurrent writer replaced our tags, not here);
- a failed run (notify-failed-runs: notify to two channels; nothing loads azure.ai.ml).

Phases, in order: interpreter start-up; imports (``function_app``); core (settings, rules); ledger (client + table
check); adapters — these three under ``long_lived()`` as ``shared.runtime.engine()`` builds them; Azure ML SDK
import (``azure.ai.ml``, loaded by the first Azure ML client built: ``shared.adapters.azureml.clients.load_sdk``,
timed on its own here); credential (``azure.identity`` import; the token comes from the fake's stand-in, so a real
Entra ID / IMDS token fetch is NOT in these figures); first event (claim, the actions' calls, settle). Medians of N
runs.

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
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fakes.azureml import FakeAzureML  # noqa: E402
from tests.fakes.azurite import Azurite  # noqa: E402
from tests.fakes.webhook_receiver import WebhookReceiver  # noqa: E402
from tests.ledger.shipped import CHANNEL_SETTINGS, WORKSPACE, delivery  # noqa: E402

PROBE = """
import json, sys, time
marks = {"started": time.time()}
import function_app
marks["imports"] = time.time()
from shared.longlived import long_lived
with long_lived():  # as shared.runtime.engine() builds the engine
    from shared.settings import get_settings
    from shared.reactions import load_rules
    settings = get_settings(); rules = load_rules(settings.rules_path)
    marks["core"] = time.time()
    from shared.ledger import open_ledger
    ledger = open_ledger(settings)
    marks["ledger"] = time.time()
    from shared.adapters import build_adapters
    adapters = build_adapters(settings, rules, ledger)
    marks["adapters"] = time.time()
if sys.argv[2] == "azureml":  # what the first Azure ML client built does
    from shared.adapters.azureml.clients import load_sdk
    load_sdk()
marks["Azure ML SDK import"] = time.time()
if sys.argv[2] == "azureml":
    import azure.identity
    from tests.fakes.azureml import FakeCredential
    azure.identity.DefaultAzureCredential = lambda **_: FakeCredential()  # no Entra ID here
marks["credential"] = time.time()
from shared.engine import Engine
engine = Engine(rules, ledger, adapters)
(outcome,) = engine.handle_delivery(sys.argv[1])
marks["first event"] = time.time()
print(json.dumps({"marks": marks, "outcome": outcome.outcome.value, "reason": outcome.reason}))
"""
FLOOR = "import time; t = time.time(); import azure.functions; print(time.time() - t)"
PHASES = ("interpreter", "imports", "core", "ledger", "adapters", "Azure ML SDK import", "credential", "first event")
CASES = {  # name → (delivery kind, path)
    "ModelRegistered, Azure ML": ("model_registered", "azureml"),
    "failed run, notify only": ("run_failed", "notify"),
}


def probe(env: dict[str, str], kind: str, path: str, n: int) -> dict[str, float]:
    name = uuid.uuid4().hex[:10]
    env = {**env, "MLREACTOR_TABLE_PREFIX": f"f{name}", "MLREACTOR_QUARANTINE_CONTAINER": f"f-{name}"}
    started = time.time()
    out = subprocess.run([sys.executable, "-c", PROBE, delivery(kind, n), path], cwd=ROOT, env=env,
                         capture_output=True, text=True, check=True).stdout
    report = json.loads(out.strip().splitlines()[-1])
    if report["outcome"] != "acted":
        raise SystemExit(f"the first {kind} was {report['outcome']}, not acted: {report['reason']}")
    times = [started, *report["marks"].values()]
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
    results: dict[str, list[dict[str, float]]] = {}
    receiver = WebhookReceiver().start()
    with Azurite() as azurite, tempfile.TemporaryDirectory() as tls:
        aml = FakeAzureML(Path(tls)).start()
        aml.add_data("holdout-data", "1")  # what the offline-test pipeline's YAML refers to
        for n in range(args.runs):  # the versions the ModelRegistered events announce
            aml.add_model(f"model-{n % 97}", str(n + 1))
        env = {
            **os.environ, "PYTHONPATH": str(ROOT), "MLREACTOR_LEDGER": "tables", "MLREACTOR_DRY_RUN": "false",
            "MLREACTOR_STORAGE_CONNECTION_STRING": azurite.connection_string, "MLREACTOR_ALLOW_HTTP_WEBHOOKS": "true",
            "MLREACTOR_SUBSCRIBED_WORKSPACES": WORKSPACE,
            "AZUREML_DEV_URL_MFE": aml.base_url, "REQUESTS_CA_BUNDLE": str(aml.cert.cert_path),
            **{setting: receiver.url(f"/{setting.lower()}") for setting in CHANNEL_SETTINGS},
        }
        for _ in range(args.runs):  # interleaved, so load on the machine falls on every case alike
            for case, (kind, path) in CASES.items():
                results.setdefault(case, []).append(probe(env, kind, path, len(results[case])))
        aml.stop()
    receiver.stop()
    floor = statistics.median(seconds(FLOOR) for _ in range(args.runs))
    print(f"first invocation, median of {args.runs} fresh processes per case: Tables ledger on Azurite, Azure ML "
          "and notify live against local fakes")
    print(f"{'phase':<22}" + "".join(f"{case:>32}" for case in CASES))
    for phase in (*PHASES, "total"):
        print(f"{phase:<22}" + "".join(f"{statistics.median(r[phase] for r in runs):>30.3f} s"
                                      for runs in results.values()))
    print(f"import floor (azure.functions alone, same run): {floor:.3f} s")
    for case, runs in results.items():
        total = statistics.median(r["total"] for r in runs)
        print(f"{case}: first decision {total:.2f} s = {total / floor:.1f}x the floor"
              + (" (target <= 1.8 s; 2.48 s before issue 17)" if "ModelRegistered" in case else ""))



if __name__ == "__main__":
    main()
