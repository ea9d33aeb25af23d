"""The shipped rules' workload: deliveries varied so they act as in production, on an engine that runs the shipped
``reactions.yaml`` with a live notify adapter posting to a local receiver.

Shared by the round-trip tests (``tests/ledger/test_round_trips.py``) and the benchmarks (``benchmarks/``): each
kind of delivery below names the outcome and the path it takes through the shipped rules.

- ``model_registered``: a new model version → test-new-model (once_per + tag_model + run_pipeline) → acted
- ``model_registered_in_chain``: the same, registered by the chain's retraining job (it carries the correlation tag)
- ``model_deployed``: a new deployment → promote-deployed-model (tag_model + notify to one channel) → acted
- ``run_failed``: a failed run outside the chain, new experiment → notify-failed-runs (two channels, throttle_key)
- ``drift``: a monitor's first drift → retrain-on-drift (throttle + run_pipeline + notify + publish_event) → acted
- ``drift_again``: that monitor again within 6 h → ignored (throttled)
- ``run_completed``: a run no rule wants → ignored
- ``foreign``: a model registered in a workspace not allowed → rejected
- ``unparseable``: not JSON → quarantined
- ``duplicate``: a delivery seen before → duplicate
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from shared.actions import ActionAdapter, ActionKind
from shared.adapters.notify import NotifyAdapter
from shared.engine import Engine
from shared.ledger.port import Ledger
from shared.reactions import Rules, load_rules
from shared.settings import Settings
from tests.conftest import WORKSPACE  # it also allows that workspace for the shipped rules (as tests do)
from tests.fakes.recording import RecordingAdapter
from tests.fakes.webhook_receiver import WebhookReceiver

ROOT = Path(__file__).resolve().parent.parent.parent
RULES = ROOT / "reactions.yaml"
SAMPLES = ROOT / "tests" / "events" / "eventgrid"
CHANNEL_SETTINGS = ("MLREACTOR_TEAMS_OPS_URL", "MLREACTOR_SLACK_OPS_URL")  # the shipped channels' url_setting
KINDS = (
    "model_registered", "model_registered_in_chain", "model_deployed", "run_failed", "drift", "drift_again",
    "run_completed", "foreign", "unparseable",
)


def _sample(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((SAMPLES / f"{name}.json").read_text())[0]
    return event


def delivery(kind: str, n: int) -> str:
    """The ``n``-th distinct delivery of ``kind`` (one event), as Event Grid posts it."""
    if kind == "unparseable":
        return f'[{{"id": "broken-{n}", "eventType": '
    sample = {
        "model_registered": "model_registered", "model_registered_in_chain": "model_registered",
        "foreign": "model_registered", "model_deployed": "model_deployed", "run_failed": "run_status_changed_failed",
        "drift": "dataset_drift_detected", "drift_again": "dataset_drift_detected", "run_completed": "run_completed",
    }[kind]
    event = copy.deepcopy(_sample(sample))
    event["id"] = f"{kind}-{n}"
    event["topic"] = WORKSPACE.replace("mlw-prod", "mlw-sandbox") if kind == "foreign" else WORKSPACE
    data = event["data"]
    if sample == "model_registered":
        name = f"{'chained' if kind == 'model_registered_in_chain' else 'model'}-{n % 97}"  # own once_per keys
        data["ModelName"], data["ModelVersion"] = name, n + 1
        event["subject"] = f"models/{name}:{n + 1}"
        if kind == "model_registered_in_chain":
            data["ModelTags"] = {**data["ModelTags"], "mlreactor.correlation": f"drift-{n}"}
    elif kind == "model_deployed":
        data["ServiceName"], data["ModelIds"] = f"svc-{n}", f"model-{n % 97}:{n + 1}"
        event["subject"] = f"endpoints/svc-{n}"
    elif kind == "run_failed":
        data["experimentName"], data["runId"] = f"experiment-{n}", f"run-{n}"
        event["subject"] = f"experiments/{data['experimentId']}/runs/run-{n}"
    elif kind in ("drift", "drift_again"):
        data["DataDriftName"] = f"monitor-{n}"  # drift_again: the monitor of drift n, inside its 6 h window
        data["RunId"] = f"{data['DataDriftId']}_{kind}_{n}"
        event["subject"] = f"datadrift/{data['DataDriftId']}/run/{data['RunId']}"  # its own notify state
    elif kind == "run_completed":
        data["runId"] = f"run-completed-{n}"
    return json.dumps([event])


@contextmanager
def channels_to(receiver: WebhookReceiver) -> Iterator[None]:
    """Point the shipped channels (ops-teams, ops-slack) at the local receiver for the duration."""
    before = {name: os.environ.get(name) for name in CHANNEL_SETTINGS}
    os.environ.update({name: receiver.url(f"/{name.lower()}") for name in CHANNEL_SETTINGS})
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def shipped_engine(ledger: Ledger, effects: Path, rules: Rules | None = None) -> Engine:
    """The shipped rules; notify is live (to the receiver ``channels_to`` names), every other kind records its
    effect in ``effects`` without touching the ledger (as the Azure ML and Event Grid adapters do)."""
    rules = rules or load_rules(RULES)
    adapters: dict[ActionKind, ActionAdapter] = {kind: RecordingAdapter(kind, effects) for kind in ActionKind}
    adapters[ActionKind.NOTIFY] = NotifyAdapter(Settings(allow_http_webhooks=True), rules, ledger, backoff=0)
    return Engine(rules, ledger, adapters)
