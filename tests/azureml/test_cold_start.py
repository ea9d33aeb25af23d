"""Cold start: with live Azure ML configured, azure-ai-ml is loaded by the first Azure ML action, never before.

Checked in a fresh interpreter (this test session has long imported the SDK): import ``function_app`` exactly as
the worker does, handle a notify-only event through the indexed function, then look at ``sys.modules``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from shared.actions import ActionKind
from shared.adapters import build_adapters, describe
from shared.adapters.azureml import AzureMLAdapter
from shared.ledger.sqlite import SqliteLedger
from shared.reactions import load_rules
from shared.settings import Settings
from tests.conftest import EVENTS, ROOT, WORKSPACE

PROBE = """
import gc, json, sys
import function_app
from azure.functions.eventgrid import EventGridEventInConverter
from azure.functions.meta import Datum

raw = json.loads(sys.argv[1])
functions = {f.get_function_name(): f for f in function_app.app.get_functions()}
on_run_failed = functions["on_run_failed"].get_user_function()
on_run_failed(EventGridEventInConverter.decode(Datum(type="json", value=json.dumps(raw)), trigger_metadata={}))

from shared.actions import ActionKind
from shared.adapters import describe
from shared import runtime

engine = runtime.engine()
(entry,) = engine.ledger.audit(limit=1)
report = {"outcome": entry.outcome, "adapters": describe(engine.adapters)}
report["sdk_after_notify"] = "azure.ai.ml" in sys.modules
frozen_with_engine = gc.get_freeze_count()
# Control: the first Azure ML use is what loads the SDK (building a client makes no network call).
from shared.events import Workspace

engine.adapters[ActionKind.TAG_MODEL].clients.get(Workspace.parse(raw["topic"]))
report["sdk_after_first_client"] = "azure.ai.ml" in sys.modules
report["frozen"] = [frozen_with_engine, gc.get_freeze_count()]
report["gc_enabled"] = gc.isenabled()
print(json.dumps(report))
"""


def test_a_notify_only_event_never_loads_azure_ai_ml_even_when_azure_ml_is_live(tmp_path: Path):
    raw = json.loads((EVENTS / "eventgrid" / "run_status_changed_failed.json").read_text())[0]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLREACTOR_", "AZURE"))}
    env.update({
        "MLREACTOR_AZUREML_LIVE": "true",
        "MLREACTOR_STATE_DIR": str(tmp_path),
        "MLREACTOR_RULES_PATH": str(ROOT / "reactions.yaml"),
        "MLREACTOR_SUBSCRIBED_WORKSPACES": WORKSPACE,  # what the shipped rules allow
        "PYTHONPATH": str(ROOT),
    })

    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(raw)], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=60, check=False,
    )

    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["outcome"] == "acted"
    assert report["adapters"]["run_pipeline"] == report["adapters"]["tag_model"] == "live"
    assert report["sdk_after_notify"] is False
    assert report["sdk_after_first_client"] is True
    # What lives as long as the process is out of the cyclic GC's sight (shared/longlived.py): the engine with what
    # it loaded, then the SDK's modules (a few hundred thousand objects); the collector runs on for the rest.
    with_engine, with_sdk = report["frozen"]
    assert with_engine > 10_000
    assert with_sdk - with_engine > 100_000
    assert report["gc_enabled"] is True


def test_live_azure_ml_adapters_are_built_only_when_asked_for_and_dry_run_wins(tmp_path: Path):
    rules = load_rules(ROOT / "reactions.yaml")
    ledger = SqliteLedger(tmp_path / "ledger.sqlite3")
    kinds = ("run_pipeline", "tag_model", "tag_run", "quality_gate")

    def built(**settings: object) -> dict[ActionKind, Any]:
        return build_adapters(Settings(**settings), rules, ledger)  # type: ignore[arg-type]

    default = describe(built())
    live = built(azureml_live=True)
    forced_dry = describe(built(azureml_live=True, dry_run=True))
    forced_live = describe(built(dry_run=False))
    ledger.close()

    assert {default[k] for k in kinds} == {"dry-run"}
    assert {describe(live)[k] for k in kinds} == {"live"}  # the gate reads the workspace through the same clients
    assert live[ActionKind.RUN_PIPELINE] is live[ActionKind.TAG_RUN]  # one adapter: shared clients and locks
    adapter = live[ActionKind.TAG_MODEL]
    assert isinstance(adapter, AzureMLAdapter) and adapter.base_dir == ROOT
    assert live[ActionKind.QUALITY_GATE].state.clients is adapter.clients
    assert {forced_dry[k] for k in kinds} == {"dry-run"}
    assert {forced_live[k] for k in kinds} == {"live"}
