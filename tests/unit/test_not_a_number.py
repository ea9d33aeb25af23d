"""Numbers that are not numbers (NaN, ±Infinity) are a clear quarantine, never a match."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from pydantic import ValidationError

from shared.actions import ActionKind
from shared.errors import PermanentError, RulesError
from shared.gate import MetricRule, evaluate
from shared.outcomes import Outcome
from tests.conftest import Harness, delivery, rules_from

Build = Callable[..., Harness]


@pytest.mark.parametrize("coefficient", ["NaN", "Infinity", "-Infinity", '"NaN"', '"inf"'])
def test_a_drift_coefficient_that_is_not_a_number_is_quarantined_and_launches_nothing(
    make_engine: Build, coefficient: str
) -> None:
    h = make_engine()
    text = json.dumps(delivery("dataset_drift_detected")).replace("0.8350349068479208", coefficient)
    (outcome,) = h.engine.handle_delivery(text)
    assert outcome.outcome is Outcome.QUARANTINED
    assert "DriftCoefficient" in outcome.reason
    assert h.executed(ActionKind.RUN_PIPELINE) == []
    assert h.ledger.quarantined()[0].raw  # kept for a person


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_a_metric_that_is_not_a_number_is_a_permanent_error_not_a_verdict(value: float) -> None:
    rules = {"auc": MetricRule(min=0.8)}
    with pytest.raises(PermanentError, match=r"the candidate's metric auc=(nan|inf|-inf) is not a number"):
        evaluate(rules, ["auc"], {"auc": value}, None, None)
    with pytest.raises(PermanentError, match=r"the champion 3's metric auc="):
        evaluate(rules, ["auc"], {"auc": 0.9}, {"auc": value}, "3")


@pytest.mark.parametrize("threshold", [".nan", ".inf", "-.inf"])
def test_a_threshold_that_is_not_a_number_is_refused_when_the_rules_load(threshold: str) -> None:
    with pytest.raises(RulesError, match="finite number"):
        rules_from(f"""
rules:
  - name: gate
    on: RunCompleted
    do:
      - quality_gate: {{metrics: {{auc: {{min: {threshold}}}}}}}
""")
    with pytest.raises(ValidationError):
        MetricRule.model_validate({"min": float("nan")})
