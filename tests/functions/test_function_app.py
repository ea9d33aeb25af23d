"""The Functions side, as the host sees it: indexed functions, bindings, and raw payloads through the worker."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
from azure.functions.eventgrid import EventGridEventInConverter
from azure.functions.meta import Datum

from shared import runtime
from shared.actions import ActionKind
from shared.errors import TransientError
from shared.outcomes import Outcome
from tests.conftest import ROOT, SAMPLES, Harness, event, indexed

EVENT_GRID_FUNCTIONS = {
    "on_model_registered", "on_model_deployed", "on_run_completed", "on_run_failed", "on_dataset_drift",
    "on_model_monitor_signal",
}


def test_the_host_indexes_one_event_grid_function_per_subscription() -> None:
    functions = indexed()
    grid = {
        name for name, f in functions.items()
        if [b.get_dict_repr()["type"] for b in f.get_bindings()] == ["eventGridTrigger"]
    }
    assert grid == EVENT_GRID_FUNCTIONS
    for name in grid:
        (binding,) = functions[name].get_bindings()
        assert binding.get_dict_repr()["name"] == "event"
        assert binding.get_dict_repr()["direction"].name == "IN"


def through_worker(raw: dict[str, Any]) -> Any:
    """Exactly what the Python worker does with the JSON the host hands it."""
    return EventGridEventInConverter.decode(Datum(type="json", value=json.dumps(raw)), trigger_metadata={})


def call(name: str, raw: dict[str, Any]) -> None:
    user_function = indexed()[name].get_user_function()
    user_function(through_worker(raw))


@pytest.fixture
def app_engine(make_engine: Callable[..., Harness], monkeypatch: pytest.MonkeyPatch) -> Harness:
    harness = make_engine()
    monkeypatch.setattr(runtime, "_engine", harness.engine)
    return harness


@pytest.mark.parametrize("schema", ["eventgrid", "cloudevents"])
@pytest.mark.parametrize("name", SAMPLES)
def test_every_sample_goes_through_the_worker_converter_into_the_engine(
    app_engine: Harness, name: str, schema: str
) -> None:
    raw = event(name, schema)
    call("on_model_registered", raw)  # any trigger: the engine matches on the event, not on the function
    (entry,) = app_engine.ledger.audit(event_id=raw["id"])
    assert entry.outcome in {"acted", "ignored"}


def test_a_redelivered_event_returns_normally_as_a_duplicate(app_engine: Harness) -> None:
    raw = event("run_status_changed_failed")
    call("on_run_failed", raw)
    call("on_run_failed", raw)
    # the duplicate is logged and traced, not stored: the audit holds what was decided, once
    assert [e.outcome for e in app_engine.ledger.audit(event_id=raw["id"])] == ["acted"]
    assert len(app_engine.executed(ActionKind.NOTIFY)) == 1


def test_a_transient_failure_raises_so_event_grid_redelivers(app_engine: Harness) -> None:
    app_engine.adapters[ActionKind.NOTIFY].fail_next(TransientError("Teams 503"))
    raw = event("run_status_changed_failed")
    with pytest.raises(TransientError, match="Teams 503"):
        call("on_run_failed", raw)
    call("on_run_failed", raw)  # the redelivery
    assert [e.outcome for e in app_engine.ledger.audit(event_id=raw["id"])] == ["acted", "failed"]


def test_a_bad_payload_is_quarantined_and_returns_so_it_is_not_redelivered_forever(app_engine: Harness) -> None:
    raw = event("model_registered")
    raw["data"]["ModelVersion"] = None
    call("on_model_registered", raw)  # does not raise
    (entry,) = app_engine.ledger.audit(event_id=raw["id"])
    assert entry.outcome == Outcome.QUARANTINED.value and "data.ModelVersion" in entry.reason


def run_python(code: str) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True, timeout=120
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


HEAVY = ("azure.ai.ml", "azure.devops", "azure.identity", "azure.data.tables", "azure.eventgrid",
         # the core itself loads on the first invocation, not at cold start
         "pydantic", "pydantic_settings", "yaml", "shared.engine", "shared.settings")


def test_importing_function_app_loads_no_heavy_sdk() -> None:
    loaded = run_python(
        "import sys, json, function_app\n"
        f"print(json.dumps({{m: m in sys.modules for m in {HEAVY!r}}}))"
    )
    assert loaded == dict.fromkeys(HEAVY, False)


def test_handling_a_notify_only_event_loads_no_azure_ml_or_devops_sdk(tmp_path: Any) -> None:
    code = f"""
import json, os, sys
os.environ["MLREACTOR_STATE_DIR"] = {str(tmp_path)!r}
import function_app
from azure.functions.eventgrid import EventGridEventInConverter
from azure.functions.meta import Datum
raw = {json.dumps(event("run_status_changed_failed"))!r}
fn = {{f.get_function_name(): f for f in function_app.app.get_functions()}}["on_run_failed"]
fn.get_user_function()(EventGridEventInConverter.decode(Datum(type="json", value=raw), trigger_metadata={{}}))
print(json.dumps({{m: m in sys.modules for m in ("azure.ai.ml", "azure.devops")}}))
"""
    assert run_python(code) == {"azure.ai.ml": False, "azure.devops": False}
