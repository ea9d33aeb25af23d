"""The Bicep in infra/ against the app, without Azure.

How the Bicep is read: with ``pycep`` (package pycep-parser), the Bicep parser checkov itself uses, pinned to the
version checkov 3.3.30 pins. It turns each file into plain data: literal values come out as Python values, so the
subscription table — the ``functionSubscriptions`` variable of ``infra/app/workspace-events.bicep``, kept a literal
on purpose — reads back exactly. No Bicep CLI is needed (it is not installable from the registries we reach).

What is checked:
* every file parses with checkov's parser (a file it cannot parse would silently go unscanned);
* the subscriptions name exactly the Event Grid-triggered functions ``app.get_functions()`` indexes, and each
  subscription delivers to its function with a retry policy and dead-lettering;
* routing: Event Grid's filter semantics (event types, ``StringIn``, ``StringContains``; string comparisons
  case-insensitive) applied to the documented sample events give each sample to the functions that should get it,
  and every function receives events of one kind;
* the app settings name real ``MLREACTOR_*`` settings, and secrets are Key Vault references.
"""

from __future__ import annotations

import copy
import importlib.util
import json
from functools import cache
from typing import Any

import pytest
import yaml
from azure.eventgrid import SystemEventNames
from pycep import BicepParser

from shared.events import RELEASE_EVENTS, EventKind, parse_event
from shared.settings import Settings
from tests.conftest import ROOT, SAMPLES, event

INFRA = ROOT / "infra"


@cache
def bicep(relative: str) -> dict[str, Any]:
    return BicepParser().parse(file_path=INFRA / relative)  # type: ignore[no-any-return]


def subscriptions() -> list[dict[str, Any]]:
    table: list[dict[str, Any]] = bicep("app/workspace-events.bicep")["variables"]["functionSubscriptions"]["value"]
    return table


@cache
def event_grid_functions() -> frozenset[str]:
    """The functions the host would index with an Event Grid trigger (HTTP, timer ... functions are left out).

    ``app.get_functions()`` may be called once per app (a second call reports every function as a duplicate) and
    other tests index ``function_app.app``, so this runs ``function_app.py`` again as a module of its own: a new
    ``FunctionApp`` with whatever that file registers.
    """
    spec = importlib.util.spec_from_file_location("function_app_indexed_by_infra_tests", ROOT / "function_app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return frozenset(
        fn.get_function_name()
        for fn in module.app.get_functions()
        if any(binding.type == "eventGridTrigger" for binding in fn.get_bindings())
    )


# Event Grid's filtering, as documented (event-filtering.md): included event types, then every advanced filter
# (AND); string comparisons are case-insensitive. Keys are resolved case-insensitively too: the Azure ML docs give
# the key `data.RunTags...` for payloads whose field is `runTags`.
def _value_at(obj: Any, key: str) -> Any:
    for part in key.split("."):
        if not isinstance(obj, dict):
            return None
        obj = next((v for k, v in obj.items() if k.lower() == part.lower()), None)
    return obj


def _passes(rule: dict[str, Any], raw: dict[str, Any]) -> bool:
    value = _value_at(raw, rule["key"])
    if not isinstance(value, str):
        return False
    values = [v.lower() for v in rule["values"]]
    if rule["operatorType"] == "StringIn":
        return value.lower() in values
    if rule["operatorType"] == "StringContains":
        return any(v in value.lower() for v in values)
    raise AssertionError(f"the test does not model operator {rule['operatorType']!r}: add it")


def receivers(raw: dict[str, Any]) -> set[str]:
    """The functions whose subscription accepts this Event Grid-schema event."""
    return {
        sub["function"]
        for sub in subscriptions()
        if raw["eventType"].lower() in {t.lower() for t in sub["eventTypes"]}
        and all(_passes(rule, raw) for rule in sub["advancedFilters"])
    }


def sample(name: str, **data: Any) -> dict[str, Any]:
    raw = copy.deepcopy(event(name))
    raw["data"].update(data)
    return raw


# ---------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", sorted(str(p.relative_to(INFRA)) for p in INFRA.rglob("*.bicep")))
def test_every_bicep_file_parses_with_the_parser_checkov_uses(path: str) -> None:
    assert bicep(path)["resources"] or bicep(path)["variables"] or bicep(path)["outputs"]


def test_the_subscriptions_name_exactly_the_event_grid_functions_the_app_indexes() -> None:
    names = [sub["function"] for sub in subscriptions()]
    assert len(names) == len(set(names)), "one subscription per function"
    assert set(names) == event_grid_functions()


def test_each_subscription_delivers_to_its_function_with_retries_and_dead_lettering() -> None:
    resource = bicep("app/workspace-events.bicep")["resources"]["subscriptions"]["config"]
    assert resource["loop_type"]["detail"] == {"item_name": "sub", "array_name": "functionSubscriptions"}
    properties = resource["config"]["properties"]
    assert properties["eventDeliverySchema"] == "EventGridSchema"  # what func.EventGridEvent expects
    assert properties["destination"]["endpointType"] == "AzureFunction"
    assert properties["destination"]["properties"]["resourceId"] == "${functionAppId}/functions/${sub.function}"
    assert properties["destination"]["properties"]["maxEventsPerBatch"] == 1
    assert set(properties["retryPolicy"]) == {"maxDeliveryAttempts", "eventTimeToLiveInMinutes"}
    dead_letter = properties["deadLetterWithResourceIdentity"]
    assert dead_letter["identity"]["type"] == "UserAssigned"
    assert dead_letter["deadLetterDestination"]["endpointType"] == "StorageBlob"


def test_every_event_type_is_an_azure_ml_system_event() -> None:
    known = {str(name.value) for name in SystemEventNames if str(name.value).startswith("Microsoft.MachineLearning")}
    used = {t for sub in subscriptions() for t in sub["eventTypes"]}
    assert used <= known
    assert used == known, "an Azure ML event type no function subscribes to"


def test_filters_stay_within_event_grid_limits() -> None:
    for sub in subscriptions():
        values = [v for rule in sub["advancedFilters"] for v in rule["values"]]
        assert len(values) <= 25 and all(len(v) <= 512 for v in values), sub["function"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (sample("model_registered"), {"on_model_registered"}),
        (sample("model_deployed"), {"on_model_deployed"}),
        (sample("run_completed"), {"on_run_completed"}),
        (sample("dataset_drift_detected"), {"on_dataset_drift"}),
        (sample("run_status_changed_failed"), {"on_run_failed"}),
        (sample("run_status_changed_failed", runStatus="Canceled"), {"on_run_failed"}),
        (sample("run_status_changed_failed", runStatus="Running"), set()),
        (sample("run_status_changed_failed", runStatus="Completed"), set()),
        (sample("model_monitor_threshold_breached"), {"on_model_monitor_signal"}),
        (sample("model_monitor_threshold_breached", runTags={"azureml_modelmonitor_threshold_breached": ""}), set()),
        (sample("model_monitor_threshold_breached", runStatus="Failed"), {"on_run_failed", "on_model_monitor_signal"}),
    ],
    ids=[
        "registered", "deployed", "run-completed", "v1-drift", "run-failed-lowercase", "run-canceled",
        "run-running-is-noise", "run-completed-status-is-noise", "monitor-breach", "monitor-no-breach",
        "monitor-run-failed-with-breach",
    ],
)
def test_the_filters_route_each_documented_event_to_the_functions_for_it(
    raw: dict[str, Any], expected: set[str]
) -> None:
    assert receivers(raw) == expected


def test_every_function_receives_events_of_one_kind_and_every_kind_reaches_a_function() -> None:
    """A function's events share a kind (a monitor signal is also a RunStatusChanged), so each function is one
    reaction family; and no event kind the engine knows is left without a subscription."""
    kinds_by_function: dict[str, list[frozenset[EventKind]]] = {}
    for name in SAMPLES:
        parsed = parse_event(event(name))
        for function in receivers(event(name)):
            kinds_by_function.setdefault(function, []).append(parsed.kinds)
    assert set(kinds_by_function) == event_grid_functions(), "a function no documented event reaches"
    for function, kinds in kinds_by_function.items():
        assert frozenset.intersection(*kinds), f"{function} receives unrelated kinds: {kinds}"
    delivered = {kind for kinds in kinds_by_function.values() for ks in kinds for kind in ks}
    # Release kinds come from the release targets' hooks and the reconciler (functions/release_hooks.py).
    assert delivered == set(EventKind) - {EventKind.UNKNOWN} - set(RELEASE_EVENTS)


# ---------------------------------------------------------------------------------------------------------------------
def app_settings() -> dict[str, Any]:
    main = bicep("main.bicep")["variables"]
    return {**main["appSettings"]["value"], **main["devopsSettings"]["value"]}


def channel_url_settings() -> set[str]:
    rules = yaml.safe_load((ROOT / "reactions.yaml").read_text())
    return {channel["url_setting"] for channel in rules.get("channels", {}).values() if "url_setting" in channel}


def test_every_app_setting_is_a_setting_the_app_reads() -> None:
    fields = {f"MLREACTOR_{name.upper()}" for name in Settings.model_fields}
    assert set(app_settings()) <= fields | channel_url_settings()
    assert app_settings()["MLREACTOR_LEDGER"] == "tables"


def test_secrets_are_key_vault_references_never_values() -> None:
    secret_fields = {
        f"MLREACTOR_{name.upper()}" for name, field in Settings.model_fields.items()
        if "SecretStr" in str(field.annotation)
    }
    settings = app_settings()
    secrets = (secret_fields | channel_url_settings()) & set(settings)
    assert {"MLREACTOR_DEVOPS_PAT"} | channel_url_settings() <= secrets
    for name in secrets:
        assert str(settings[name]).startswith("${keyVaultReference}"), name
    reference = bicep("main.bicep")["variables"]["keyVaultReference"]["value"]
    assert reference.startswith("@Microsoft.KeyVault(VaultName=") and reference.endswith(";SecretName=")


def test_the_example_parameters_file_sets_only_parameters_main_bicep_declares() -> None:
    declared = set(bicep("main.bicep")["parameters"])
    for name in ("example.parameters.json", "main.parameters.json"):
        given = set(json.loads((INFRA / name).read_text())["parameters"])
        assert given <= declared, name
    required = {n for n, p in bicep("main.bicep")["parameters"].items() if p.get("default") is None}
    assert required <= set(json.loads((INFRA / "example.parameters.json").read_text())["parameters"])


def test_role_assignments_are_named_by_scope_principal_and_role() -> None:
    for path in ("app/rbac.bicep", "app/workspace-rbac.bicep"):
        for name, resource in bicep(path)["resources"].items():
            if resource["type"] != "Microsoft.Authorization/roleAssignments":
                continue
            guid = resource["config"]["name"]["function"]
            assert guid["type"] == "guid", f"{path}:{name}"
            assert len(guid["parameters"]) == 3, f"{path}:{name}"

