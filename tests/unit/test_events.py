"""Parsing deliveries into typed events: every documented sample, every real-world quirk, clear errors."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.errors import EventParseError
from shared.events import (
    DatasetDriftDetected,
    EventKind,
    ModelDeployed,
    ModelMonitorSignal,
    ModelRegistered,
    ParseFailure,
    RunCompleted,
    RunStatusChanged,
    UnknownEvent,
    parse_delivery,
    parse_event,
)
from tests.conftest import SAMPLES, WORKSPACE, delivery, event

EXPECTED = {
    "dataset_drift_detected": DatasetDriftDetected,
    "model_deployed": ModelDeployed,
    "model_monitor_threshold_breached": ModelMonitorSignal,
    "model_registered": ModelRegistered,
    "run_completed": RunCompleted,
    "run_status_changed_failed": RunStatusChanged,
}


@pytest.mark.parametrize("schema", ["eventgrid", "cloudevents"])
@pytest.mark.parametrize("name", SAMPLES)
def test_every_documented_sample_parses_into_its_model(name: str, schema: str) -> None:
    (parsed,) = parse_delivery(json.dumps(delivery(name, schema)))
    assert type(parsed) is EXPECTED[name]
    assert parsed.source == WORKSPACE
    assert parsed.workspace is not None and parsed.workspace.name == "mlw-prod"
    assert parsed.envelope == schema
    assert parsed.time is not None and parsed.time.tzinfo is not None


@pytest.mark.parametrize("name", SAMPLES)
def test_both_schemas_give_the_same_event(name: str) -> None:
    grid = parse_event(event(name, "eventgrid"))
    cloud = parse_event(event(name, "cloudevents"))
    assert grid.model_dump(exclude={"envelope"}) == cloud.model_dump(exclude={"envelope"})


def test_model_registered_fields_are_typed_and_version_is_a_string() -> None:
    parsed = parse_event(event("model_registered"))
    assert isinstance(parsed, ModelRegistered)
    assert (parsed.model_name, parsed.model_version) == ("sklearn_regression_model", "20")
    assert parsed.model.asset_id == "azureml:sklearn_regression_model:20"
    assert dict(parsed.model_tags) == {"area": "diabetes", "type": "regression"}


@pytest.mark.parametrize("version", [20, "20", 20.0, " 20 "])
def test_model_version_int_or_string_normalises_to_the_same_string(version: Any) -> None:
    raw = event("model_registered")
    raw["data"]["ModelVersion"] = version
    assert parse_event(raw).model_version == "20"  # type: ignore[attr-defined]


@pytest.mark.parametrize("casing", [str.lower, str.upper, lambda k: k[0].lower() + k[1:], lambda k: k])
def test_data_keys_are_read_case_insensitively(casing: Any) -> None:
    raw = event("model_registered")
    raw["data"] = {casing(k): v for k, v in raw["data"].items()}
    parsed = parse_event(raw)
    assert isinstance(parsed, ModelRegistered) and parsed.model_name == "sklearn_regression_model"


def test_pascal_case_run_tags_and_lower_case_status_are_understood() -> None:
    raw = event("run_status_changed_failed")
    raw["data"]["RunTags"] = raw["data"].pop("runTags") | {"owner": "ops"}
    parsed = parse_event(raw)
    assert isinstance(parsed, RunStatusChanged)
    assert parsed.run_status == "Failed" and parsed.raw_run_status == "failed"
    assert parsed.run_tags["owner"] == "ops"


def test_null_run_type_extra_fields_and_empty_data_version_are_tolerated() -> None:
    raw = event("run_completed", dataVersion="", createdBy="someone")
    raw["data"]["createdBy"] = {"name": "x"}
    raw["data"]["runType"] = None
    parsed = parse_event(raw)
    assert isinstance(parsed, RunCompleted) and parsed.run_type is None


def test_non_string_tag_values_become_strings() -> None:
    raw = event("model_registered")
    raw["data"]["ModelTags"] = {"accuracy": 0.91, "approved": True, "nested": {"a": 1}, "none": None}
    tags = parse_event(raw).tags
    assert dict(tags) == {"accuracy": "0.91", "approved": "true", "nested": '{"a": 1}', "none": ""}


def test_tags_of_a_parsed_event_cannot_be_changed() -> None:
    parsed = parse_event(event("model_registered"))
    with pytest.raises(TypeError):
        parsed.tags["area"] = "other"  # type: ignore[index]


def test_model_monitor_signal_is_recognised_with_its_signal_and_monitor_names() -> None:
    parsed = parse_event(event("model_monitor_threshold_breached"))
    assert isinstance(parsed, ModelMonitorSignal)
    assert parsed.signal_name == "credit_card_fraud_monitor_data_drift"
    assert parsed.monitor_name == "credit_card_fraud_monitor"
    assert parsed.kinds == {EventKind.MODEL_MONITOR_SIGNAL, EventKind.RUN_STATUS_CHANGED}


def test_breach_tag_is_found_whatever_its_casing() -> None:
    raw = event("model_monitor_threshold_breached")
    tags = raw["data"].pop("runTags")
    raw["data"]["RunTags"] = {k.upper(): v for k, v in tags.items()}
    assert isinstance(parse_event(raw), ModelMonitorSignal)


def test_model_deployed_lists_every_model_id() -> None:
    parsed = parse_event(event("model_deployed"))
    assert isinstance(parsed, ModelDeployed)
    assert [str(m) for m in parsed.model_ids] == ["sklearn_regression_model:1", "sklearn_regression_model:2"]


def test_model_ids_may_be_a_json_list() -> None:
    raw = event("model_deployed")
    raw["data"]["ModelIds"] = ["a:1", "b:2"]
    assert [str(m) for m in parse_event(raw).model_ids] == ["a:1", "b:2"]  # type: ignore[attr-defined]


WS_MODELS = ("/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-mlops/providers/"
             "Microsoft.MachineLearningServices/workspaces/mlw-prod/models")


@pytest.mark.parametrize(
    ("model_ids", "expected"),
    [
        ("credit:7", ["credit:7"]),
        ("azureml:credit:7, azureml:fraud.v2:12", ["credit:7", "fraud.v2:12"]),
        (f"{WS_MODELS}/credit/versions/7", ["credit:7"]),
        ("/subscriptions/s/resourceGroups/rg/providers/microsoft.machinelearningservices/registries/shared/"
         "models/credit/versions/3", ["credit:3"]),
        ([f"{WS_MODELS}/credit/versions/7", "azureml:fraud:2", "churn:1"], ["credit:7", "fraud:2", "churn:1"]),
    ],
)
def test_model_ids_come_in_the_three_forms_azure_ml_writes(model_ids: object, expected: list[str]) -> None:
    """GIVEN ModelIds as ``name:version``, ``azureml:name:version`` or a model version's ARM id (workspace or
    registry), mixed in one list WHEN parsed THEN each is the same name and version."""
    raw = event("model_deployed")
    raw["data"]["ModelIds"] = model_ids
    assert [str(m) for m in parse_event(raw).model_ids] == expected  # type: ignore[attr-defined]


@pytest.mark.parametrize("bad", ["azureml:credit", f"{WS_MODELS}/credit", "azureml:a:b:1", "credit:"])
def test_a_model_id_in_none_of_the_forms_is_named(bad: str) -> None:
    raw = event("model_deployed")
    raw["data"]["ModelIds"] = f"ok:1,{bad}"
    with pytest.raises(EventParseError, match=r"data\.ModelIds.*ARM id"):
        parse_event(raw)


def test_drift_event_has_a_float_coefficient_and_aware_times() -> None:
    parsed = parse_event(event("dataset_drift_detected"))
    assert isinstance(parsed, DatasetDriftDetected)
    assert parsed.drift_coefficient == pytest.approx(0.835, abs=1e-3)
    assert parsed.start_time is not None and parsed.start_time.utcoffset() is not None


def test_specversion_spelled_with_a_capital_v_is_a_cloudevent() -> None:
    raw = event("model_registered", "cloudevents")
    raw["specVersion"] = raw.pop("specversion")
    assert parse_event(raw).envelope == "cloudevents"


@pytest.mark.parametrize("schema", ["eventgrid", "cloudevents"])
def test_dead_lettered_events_keep_the_dead_letter_details(schema: str) -> None:
    raw = event("model_registered", schema)
    extra = {"deadLetterReason": "MaxDeliveryAttemptsExceeded", "deliveryAttempts": 30,
             "lastDeliveryOutcome": "Probation", "publishTime": "2026-11-20T18:41:01.1Z",
             "lastDeliveryAttemptTime": "2026-11-21T18:41:01.1234567Z"}
    raw.update({k.lower(): v for k, v in extra.items()} if schema == "cloudevents" else extra)
    parsed = parse_event(raw)
    assert parsed.dead_letter is not None
    assert parsed.dead_letter.reason == "MaxDeliveryAttemptsExceeded"
    assert parsed.dead_letter.delivery_attempts == 30


def test_a_single_object_is_a_delivery_of_one() -> None:
    assert len(parse_delivery(json.dumps(event("run_completed")))) == 1


def test_unknown_event_types_are_recognised_not_errors() -> None:
    raw = event("run_completed", eventType="Microsoft.MachineLearningServices.DatasetRegistered", data=[1, 2])
    parsed = parse_event(raw)
    assert isinstance(parsed, UnknownEvent) and parsed.kind is EventKind.UNKNOWN
    other = parse_event(event("run_completed", eventType="Microsoft.Storage.BlobCreated"))
    assert isinstance(other, UnknownEvent)


@pytest.mark.parametrize("schema", ["eventgrid", "cloudevents"])
@pytest.mark.parametrize("name", SAMPLES)
def test_raw_gives_back_an_event_that_parses_to_the_same_model(name: str, schema: str) -> None:
    parsed = parse_event(event(name, schema))
    again = parse_event(json.loads(json.dumps(parsed.raw())))
    assert again.model_dump(exclude={"envelope"}) == parsed.model_dump(exclude={"envelope"})


def test_the_same_source_and_id_is_the_same_event_key() -> None:
    a = parse_event(event("run_completed"))
    b = parse_event(event("run_completed", "cloudevents"))
    assert a.key == b.key


@pytest.mark.parametrize(
    ("mutate", "field", "shown"),
    [
        (lambda e: e["data"].update(ModelVersion=[1]), "data.ModelVersion", "[1]"),
        (lambda e: e["data"].pop("ModelName"), "data.modelName", None),
        (lambda e: e.update(eventTime="yesterday"), "eventTime", "'yesterday'"),
        (lambda e: e.pop("id"), "id", None),
        (lambda e: e.update(data="not an object"), "data", "'not an object'"),
    ],
)
def test_unparseable_payloads_name_the_field_and_the_bad_value(mutate: Any, field: str, shown: str | None) -> None:
    raw = event("model_registered")
    mutate(raw)
    with pytest.raises(EventParseError) as caught:
        parse_event(raw)
    assert caught.value.field == field
    assert f"'{field}'" in str(caught.value)
    if shown:
        assert shown in str(caught.value)


def test_bad_model_ids_and_drift_coefficient_are_named() -> None:
    deployed = event("model_deployed")
    deployed["data"]["ModelIds"] = "no-version"
    with pytest.raises(EventParseError, match=r"data\.ModelIds.*no-version"):
        parse_event(deployed)
    drift = event("dataset_drift_detected")
    drift["data"]["DriftCoefficient"] = "high"
    with pytest.raises(EventParseError, match=r"data\.DriftCoefficient.*'high'"):
        parse_event(drift)


def test_one_poison_event_does_not_sink_the_rest_of_a_delivery() -> None:
    good = event("run_completed")
    items = parse_delivery(json.dumps([good, 42, {"id": "x"}]))
    assert isinstance(items[0], RunCompleted)
    assert isinstance(items[1], ParseFailure) and "JSON object" in items[1].reason
    assert isinstance(items[2], ParseFailure) and items[2].event_id == "x"


@pytest.mark.parametrize("payload", ["not json", "42", "null", b"\xff\xfe"])
def test_a_delivery_that_is_not_a_json_array_or_object_is_an_error(payload: Any) -> None:
    with pytest.raises(EventParseError):
        parse_delivery(payload)
