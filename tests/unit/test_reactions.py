"""The rules file: validation that lists every error precisely, and matching that says why not."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.errors import RulesError
from shared.events import EventKind, parse_event
from shared.reactions import evaluate, load_rules, throttle_key
from tests.conftest import ROOT, WORKSPACE, event, rules_from


def errors_of(text: str) -> list[str]:
    with pytest.raises(RulesError) as caught:
        rules_from(text)
    return caught.value.errors


def test_the_shipped_rules_are_valid_and_cover_every_azure_ml_event_kind() -> None:
    rules = load_rules(ROOT / "reactions.yaml")
    covered = {kind for rule in rules.spec.rules for kind in rule.on}
    assert covered >= {k for k in EventKind if k is not EventKind.UNKNOWN}
    assert WORKSPACE in rules.spec.allowed_workspaces


def test_on_is_a_key_not_the_yaml_boolean_true() -> None:
    rules = rules_from("rules: [{name: r, on: ModelRegistered, do: [{tag_model: {set: {a: b}}}]}]")
    assert rules.spec.rules[0].on == [EventKind.MODEL_REGISTERED]


def test_every_error_is_listed_with_rule_field_and_value() -> None:
    errors = errors_of("""
rules:
  - name: first
    on: ModelRegisterd
    do: [{tag_model: {set: {a: b}}}]
  - name: second
    on: RunCompleted
    when: {run_staus: [Failed]}
    do: [{run_pipline: {}}]
  - name: third
    on: RunCompleted
    throttle: {once_within: soon}
    do: [{notify: {channels: [ops], mesage: x}}]
""")
    text = "\n".join(errors)
    assert "rule 'first': on: unknown event kind 'ModelRegisterd' — did you mean 'ModelRegistered'?" in text
    assert "rule 'second': when.run_staus: unknown field — did you mean 'run_status'?" in text
    assert "unknown action 'run_pipline' — did you mean 'run_pipeline'?" in text
    assert "rule 'third': throttle.once_within: 'soon' is not a duration" in text
    assert "do[0].notify.mesage: unknown field — did you mean 'message'?" in text
    assert len(errors) >= 5


def test_action_parameters_are_validated_per_kind() -> None:
    errors = errors_of("""
rules:
  - name: r
    on: ModelRegistered
    do:
      - run_pipeline: {purpose: test}
      - queue_release: {project: p, flavour: classic}
""")
    text = "\n".join(errors)
    assert "name exactly one of job_yaml, component or batch_endpoint (got none)" in text


def test_templates_are_checked_when_the_rules_load() -> None:
    errors = errors_of("""
rules:
  - name: r
    on: ModelRegistered
    do: [{tag_model: {set: {stage: "{{ 7*7 }}"}}}]
""")
    assert "is not a placeholder" in "\n".join(errors)


def test_unknown_channels_and_duplicate_rule_names_are_errors() -> None:
    errors = errors_of("""
channels: {ops-teams: {type: teams, url_setting: X}}
rules:
  - {name: r, on: RunCompleted, do: [{notify: {channels: [ops-team]}}]}
  - {name: r, on: RunCompleted, do: [{notify: {channels: [ops-teams]}}]}
""")
    text = "\n".join(errors)
    assert "unknown channel 'ops-team' — did you mean 'ops-teams'?" in text
    assert "names must be unique" in text


def test_allowed_workspaces_must_be_workspace_resource_ids() -> None:
    errors = errors_of("allowed_workspaces: [mlw-prod]\nrules: []")
    assert any("'mlw-prod' is not a workspace resource id" in e for e in errors)


def test_a_missing_or_invalid_file_is_a_rules_error_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match="cannot read"):
        load_rules(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules: [unclosed")
    with pytest.raises(RulesError, match=r"bad\.yaml.*\n.*not valid YAML"):
        load_rules(bad)


RULES = rules_from("""
rules:
  - name: glob
    on: [ModelRegistered]
    when: {model_name: "sklearn_*", tags: {equals: {area: diabetes}, exists: [type], absent: [blocked]}}
    do: [{tag_model: {set: {a: b}}}]
  - name: regex
    on: ModelRegistered
    when: {model_name_regex: "credit-.*"}
    do: [{tag_model: {set: {a: b}}}]
  - name: failed
    on: RunStatusChanged
    when: {run_status: [failed, Canceled], experiment_name: "automl-*", run_type: "*"}
    do: [{notify: {channels: [ops]}}]
  - name: drift
    on: [DatasetDriftDetected, ModelMonitorSignal]
    when: {drift_coefficient_above: 0.9, monitor_name: "*"}
    throttle: {once_within: 6h, group_by: [monitor.name]}
    do: [{notify: {channels: [ops]}}]
  - name: signal
    on: ModelMonitorSignal
    when: {signal_name: "*_data_drift"}
    do: [{notify: {channels: [ops]}}]
  - name: off
    enabled: false
    on: ModelRegistered
    do: [{notify: {channels: [ops]}}]
channels: {ops: {type: slack, url_setting: X}}
""")


def verdict(rule: str, raw: dict[str, object]) -> tuple[bool, str]:
    (found,) = [r for r in RULES.spec.rules if r.name == rule]
    v = evaluate(found, parse_event(raw))
    return v.matched, v.reason


def test_glob_and_tag_criteria_match() -> None:
    assert verdict("glob", event("model_registered")) == (True, "all criteria hold")


def test_the_first_failing_criterion_is_named_with_the_events_value() -> None:
    raw = event("model_registered")
    raw["data"]["ModelTags"]["blocked"] = "yes"
    assert verdict("glob", raw) == (False, "when.tags.absent: tag 'blocked' is present ('yes')")
    assert verdict("regex", event("model_registered"))[1] == (
        "when.model_name_regex: 'sklearn_regression_model' does not match /credit-.*/"
    )


def test_run_status_is_compared_case_insensitively() -> None:
    assert verdict("failed", event("run_status_changed_failed"))[0] is True


def test_wrong_event_kind_and_disabled_rules_say_so() -> None:
    assert verdict("failed", event("model_registered"))[1] == (
        "on: event is ModelRegistered, rule wants RunStatusChanged"
    )
    assert verdict("off", event("model_registered")) == (False, "rule is disabled")


def test_drift_coefficient_threshold_applies_to_legacy_drift_and_not_to_v2_signals() -> None:
    assert verdict("drift", event("dataset_drift_detected")) == (
        False, "when.drift_coefficient_above: 0.8350349068479208 is not above 0.9"
    )
    assert verdict("drift", event("model_monitor_threshold_breached"))[0] is True


def test_a_monitor_signal_is_also_a_run_status_changed_event() -> None:
    assert verdict("signal", event("model_monitor_threshold_breached"))[0] is True
    assert verdict("failed", event("model_monitor_threshold_breached"))[1].startswith("when.run_status")


def test_throttle_key_groups_by_event_fields() -> None:
    (drift,) = [r for r in RULES.spec.rules if r.name == "drift"]
    assert throttle_key(drift, parse_event(event("model_monitor_threshold_breached"))) == (
        "drift|credit_card_fraud_monitor"
    )
