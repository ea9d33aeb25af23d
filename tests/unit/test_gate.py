"""The quality gate's verdicts: thresholds, champion comparison, missing metrics, the first model."""

from __future__ import annotations

from shared.gate import MetricRule, evaluate, metrics_from_tags

RULES = {
    "auc": MetricRule(min=0.80, min_improvement=0.0),
    "latency_ms": MetricRule(max=50, max_regression=5, higher_is_better=False),
}
CHAMPION = {"auc": 0.88, "latency_ms": 30.0}


def test_a_candidate_better_than_thresholds_and_champion_passes() -> None:
    verdict = evaluate(RULES, list(RULES), {"auc": 0.91, "latency_ms": 32}, CHAMPION, "3")
    assert verdict.passed and verdict.verdict == "challenger"
    assert all(row.passed for row in verdict.rows)
    assert "auc improves +0.03 vs champion 3 (0.88) >= +0" in verdict.summary


def test_missing_an_absolute_threshold_fails_and_says_which() -> None:
    verdict = evaluate(RULES, list(RULES), {"auc": 0.79, "latency_ms": 20}, CHAMPION, "3")
    assert not verdict.passed and verdict.verdict == "rejected"
    assert "auc 0.79 >= 0.8" in verdict.reasons


def test_worse_than_the_champion_fails_even_above_the_threshold() -> None:
    verdict = evaluate(RULES, list(RULES), {"auc": 0.85, "latency_ms": 40}, CHAMPION, "3")
    assert not verdict.passed
    assert verdict.reasons == [
        "auc improves -0.03 vs champion 3 (0.88) >= +0",
        "latency_ms regresses +10 vs champion 3 (30) <= +5",
    ]


def test_a_required_metric_that_is_missing_fails() -> None:
    verdict = evaluate(RULES, list(RULES), {"auc": 0.95}, CHAMPION, "3")
    assert not verdict.passed and "required metric 'latency_ms' is missing" in verdict.reasons


def test_the_first_model_has_no_champion_and_is_judged_on_thresholds_alone() -> None:
    verdict = evaluate(RULES, list(RULES), {"auc": 0.81, "latency_ms": 49}, None, None)
    assert verdict.passed
    assert verdict.reasons == ["no champion yet: relative thresholds not applied"]
    assert [row.check for row in verdict.rows] == ["auc 0.81 >= 0.8", "latency_ms 49 <= 50"]


def test_the_recorded_data_carries_the_verdict_and_the_numbers_as_tags() -> None:
    verdict = evaluate(RULES, list(RULES), {"auc": 0.91, "latency_ms": 32}, CHAMPION, "3")
    data = verdict.as_data({"auc": 0.91, "latency_ms": 32})
    assert data["tags"]["mlreactor.verdict"] == "challenger"
    assert data["tags"]["mlreactor.metric.auc"] == "0.91"
    assert data["table"][0] == {"metric": "auc", "candidate": 0.91, "champion": 0.88,
                                "check": "auc 0.91 >= 0.8", "passed": True}
    assert len(data["tags"]["mlreactor.gate"]) <= 256


def test_metrics_are_read_from_prefixed_tags_earlier_sources_first() -> None:
    found = metrics_from_tags(
        {"mlreactor.metric.auc": "0.9", "other": "1", "mlreactor.metric.note": "n/a"},
        {"mlreactor.metric.auc": "0.1", "mlreactor.metric.latency_ms": "31"},
    )
    assert found == {"auc": 0.9, "latency_ms": 31.0}
