"""Microsoft's worker indexes function_app.py: what the host is told about each function.

Not reproduced here: the gRPC stream itself and the proxy worker process (the messages are handed to the runtime's
entry points directly, as the proxy worker's dispatcher does after reading them off the stream); the host's own
checks of the metadata (extension bundle resolution, binding validation) — only the worker's answer is asserted;
the host's own capabilities in the WorkerInitRequest (sent empty: the runtime reads only ``FunctionDataCache`` there).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import ROOT
from tests.worker.conftest import binding_dicts
from tests.worker.host import FunctionsHost

EVENT_GRID_FUNCTIONS = {
    "on_model_registered", "on_model_deployed", "on_run_completed", "on_run_failed", "on_dataset_drift",
    "on_model_monitor_signal",
}
HTTP_FUNCTIONS = {"health", "audit", "timeline"}
#: Release signals in (functions/release_hooks.py): POSTed by Azure DevOps service hooks and GitHub webhooks.
HOOK_FUNCTIONS = {"azure_devops_hook": "hooks/azure-devops/{organization?}", "github_hook": "hooks/github"}
TIMER_FUNCTIONS = {"purge_ledger", "reconcile_releases"}


def test_worker_init_succeeds_and_announces_the_http_body_capabilities(functions_host: FunctionsHost) -> None:
    init = functions_host.init_response
    assert init.result.status == functions_host.protos.StatusResult.Success, init.result.exception.message
    assert init.capabilities["RawHttpBodyBytes"] == "true"
    assert init.worker_metadata.runtime_name == "python"


def test_the_worker_indexes_every_function_of_the_app(functions_host: FunctionsHost) -> None:
    listing = functions_host.listing
    assert listing.result.status == functions_host.protos.StatusResult.Success
    assert listing.use_default_metadata_indexing is False  # worker indexing: the v2 model, no function.json
    assert set(functions_host.metadata) == EVENT_GRID_FUNCTIONS | HTTP_FUNCTIONS | set(HOOK_FUNCTIONS) | TIMER_FUNCTIONS
    for metadata in functions_host.metadata.values():
        assert metadata.language == "python"
        assert metadata.script_file.endswith("function_app.py")
        assert metadata.properties["worker_indexed"] == "True"
        assert metadata.function_id  # the id the host uses in load and invocation requests


def test_event_grid_functions_have_one_inbound_trigger_named_event(functions_host: FunctionsHost) -> None:
    direction = functions_host.protos.BindingInfo
    for name in EVENT_GRID_FUNCTIONS:
        metadata = functions_host.metadata[name]
        assert dict(metadata.bindings).keys() == {"event"}
        assert metadata.bindings["event"].type == "eventGridTrigger"
        assert metadata.bindings["event"].direction == direction.Direction.Value("in")
        assert binding_dicts(metadata) == [{"type": "eventGridTrigger", "direction": "IN", "name": "event"}]


def test_http_functions_take_a_get_request_and_return_the_response(functions_host: FunctionsHost) -> None:
    direction = functions_host.protos.BindingInfo.Direction
    for name in HTTP_FUNCTIONS:
        metadata = functions_host.metadata[name]
        assert metadata.bindings["req"].type == "httpTrigger"
        assert metadata.bindings["req"].direction == direction.Value("in")
        assert metadata.bindings["$return"].type == "http"
        assert metadata.bindings["$return"].direction == direction.Value("out")
        (trigger,) = [b for b in binding_dicts(metadata) if b["type"] == "httpTrigger"]
        assert trigger["route"] == name
        assert trigger["methods"] == ["GET"]
        assert trigger["authLevel"] == "FUNCTION"


def test_the_release_hooks_take_a_post_with_a_function_key(functions_host: FunctionsHost) -> None:
    for name, route in HOOK_FUNCTIONS.items():
        (trigger,) = [b for b in binding_dicts(functions_host.metadata[name]) if b["type"] == "httpTrigger"]
        assert (trigger["route"], trigger["methods"], trigger["authLevel"]) == (route, ["POST"], "FUNCTION")
    (timer,) = binding_dicts(functions_host.metadata["reconcile_releases"])
    assert (timer["type"], timer["schedule"], timer["runOnStartup"]) == ("timerTrigger", "0 */5 * * * *", False)


def test_the_purge_runs_on_its_schedule_not_at_startup(functions_host: FunctionsHost) -> None:
    (binding,) = binding_dicts(functions_host.metadata["purge_ledger"])
    assert binding["type"] == "timerTrigger"
    assert binding["schedule"] == "0 30 2 * * *"
    assert binding["runOnStartup"] is False


COLD_START = """
import json, sys
from pathlib import Path
import azure_functions_runtime
from tests.worker import protocol
from tests.worker.host import FunctionsHost
host = FunctionsHost(azure_functions_runtime, protocol.load(), Path.cwd())
host.start()
heavy = sorted(m for m in ("azure.ai.ml", "azure.devops", "pydantic", "shared.engine") if m in sys.modules)
print(json.dumps({"functions": len(host.metadata), "heavy": heavy}))
"""


def test_indexing_in_a_fresh_worker_process_loads_no_heavy_sdk(functions_host: FunctionsHost) -> None:
    """Cold start as the worker pays it: a new process, init + metadata + loads, and nothing heavy imported."""
    done = subprocess.run([sys.executable, "-c", COLD_START], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {"functions": len(functions_host.metadata), "heavy": []}
