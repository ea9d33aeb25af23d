"""The lease outlasts the work: otherwise a live instance's claim could be taken over while it still acts."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shared.settings import Settings


def test_given_a_lease_shorter_than_the_budget_plus_one_action_when_loaded_then_both_settings_are_named() -> None:
    with pytest.raises(ValidationError, match=r"MLREACTOR_LEASE_SECONDS \(40\) .* MLREACTOR_ACTION_BUDGET_SECONDS"):
        Settings(lease_seconds=40, action_budget_seconds=20)


def test_given_the_defaults_then_the_lease_outlasts_the_budget_by_more_than_event_grids_window() -> None:
    settings = Settings()

    assert settings.lease_seconds >= settings.action_budget_seconds + 30
