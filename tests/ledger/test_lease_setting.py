"""`action deadline < lease < functionTimeout`, checked when settings load: otherwise a live instance's claim could be
taken over while it still acts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from shared.settings import Settings


def test_given_a_lease_shorter_than_the_budget_plus_one_action_when_loaded_then_both_settings_are_named() -> None:
    with pytest.raises(ValidationError, match=r"MLREACTOR_LEASE_SECONDS \(40\) .* MLREACTOR_ACTION_BUDGET_SECONDS"):
        Settings(lease_seconds=40, action_budget_seconds=20)


def test_given_the_defaults_then_the_lease_outlasts_the_budget_by_more_than_event_grids_window() -> None:
    settings = Settings()

    assert settings.lease_seconds >= settings.action_budget_seconds + 30


def test_host_json_function_timeout_and_the_default_setting_agree() -> None:
    host = json.loads((Path(__file__).resolve().parents[2] / "host.json").read_text())
    hours, minutes, seconds = (int(part) for part in host["functionTimeout"].split(":"))
    assert hours * 3600 + minutes * 60 + seconds == Settings().function_timeout_seconds


def test_the_defaults_hold_action_deadline_below_lease_below_function_timeout() -> None:
    settings = Settings()
    assert settings.action_budget_seconds + settings.action_deadline_seconds < settings.lease_seconds
    assert settings.lease_seconds < settings.function_timeout_seconds
    for budget in (settings.azureml_action_budget_seconds, settings.devops_retry_budget_seconds,
                   settings.notify_timeout_seconds):
        assert budget <= settings.action_deadline_seconds


@pytest.mark.parametrize(("values", "named"), [
    ({"lease_seconds": 400}, r"MLREACTOR_LEASE_SECONDS \(400\) must be less than MLREACTOR_FUNCTION_TIMEOUT_SECONDS "
                             r"\(300, host.json functionTimeout\)"),
    ({"action_deadline_seconds": 100}, r"MLREACTOR_ACTION_DEADLINE_SECONDS \(100\)"),
    ({"notify_timeout_seconds": 45}, r"MLREACTOR_NOTIFY_TIMEOUT_SECONDS \(45\) must be at most "
                                     r"MLREACTOR_ACTION_DEADLINE_SECONDS \(30\)"),
    ({"devops_retry_budget_seconds": 60}, r"MLREACTOR_DEVOPS_RETRY_BUDGET_SECONDS \(60\)"),
])
def test_a_broken_invariant_is_refused_when_settings_load_naming_the_settings(
    values: dict[str, float], named: str
) -> None:
    with pytest.raises(ValidationError, match=named):
        Settings(**values)
