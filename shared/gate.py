"""The quality gate: a candidate's offline-test metrics against absolute thresholds and the current champion.

Pure logic — no I/O. The ``quality_gate`` action (``shared/adapters/gate.py``) gathers the numbers (from the
RunCompleted event's tags/properties first, then from the run; the champion's from its model tags) and records the
verdict, so a redelivery sees the same verdict even if the champion changed meanwhile.

```yaml
- quality_gate:
    metrics:
      auc: {min: 0.80, min_improvement: 0.0}                 # higher is better (default)
      latency_ms: {max: 50, max_regression: 5, higher_is_better: false}
```
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

from shared.errors import PermanentError

METRIC_TAG_PREFIX = "mlreactor.metric."


class MetricRule(BaseModel):
    """Thresholds for one metric. Relative ones compare with the champion and apply only when there is one."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)  # a NaN threshold judges nothing

    min: float | None = None
    max: float | None = None
    min_improvement: float | None = None
    max_regression: float | None = None
    higher_is_better: bool = True

    @model_validator(mode="after")
    def _something_to_check(self) -> MetricRule:
        if all(v is None for v in (self.min, self.max, self.min_improvement, self.max_regression)):
            raise ValueError("give at least one of min, max, min_improvement, max_regression")
        return self


@dataclass(frozen=True)
class Row:
    """One line of the gate's table: what Ops reads in the notification."""

    metric: str
    candidate: float | None
    champion: float | None
    check: str
    passed: bool

    def as_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "candidate": self.candidate, "champion": self.champion,
                "check": self.check, "passed": self.passed}


@dataclass(frozen=True)
class Verdict:
    passed: bool
    rows: list[Row]
    champion_version: str | None
    #: Why it failed, plus notes that hold either way (e.g. no champion to compare with).
    reasons: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        return "challenger" if self.passed else "rejected"

    @property
    def summary(self) -> str:
        """``passed: auc 0.91 >= 0.8; auc +0.02 vs champion 3 >= +0.0`` (fits in an Azure ML tag value)."""
        checks = "; ".join(f"{r.check}{'' if r.passed else ' FAILED'}" for r in self.rows)
        return f"{'passed' if self.passed else 'failed'}: {checks}"[:256]

    def as_data(self, candidate: Mapping[str, float]) -> dict[str, Any]:
        """The recorded result: later actions use it as ``{{ gate.* }}``."""
        return {
            "passed": self.passed,
            "verdict": self.verdict,
            "summary": self.summary,
            "reasons": list(self.reasons),
            "champion_version": self.champion_version or "",
            "table": [r.as_dict() for r in self.rows],
            "metrics": dict(candidate),
            # Tags that record the verdict and the numbers on the candidate model version.
            "tags": {
                "mlreactor.stage": self.verdict,
                "mlreactor.verdict": self.verdict,
                "mlreactor.gate": self.summary,
                **{f"{METRIC_TAG_PREFIX}{k}": _fmt(v) for k, v in candidate.items()},
            },
        }


def metrics_from_tags(*sources: Mapping[str, str], prefix: str = METRIC_TAG_PREFIX) -> dict[str, float]:
    """Numeric ``mlreactor.metric.<name>`` values; earlier sources win; non-numeric values are ignored."""
    found: dict[str, float] = {}
    for source in sources:
        for key, value in source.items():
            if not key.startswith(prefix) or key[len(prefix):] in found:
                continue
            try:
                found[key[len(prefix):]] = float(value)
            except (TypeError, ValueError):
                continue
    return found


def evaluate(
    rules: Mapping[str, MetricRule],
    required: list[str],
    candidate: Mapping[str, float],
    champion: Mapping[str, float] | None,
    champion_version: str | None,
) -> Verdict:
    """Apply every threshold; the verdict lists each check, passed or not, with the numbers.

    A metric that is not a number (NaN, ±inf) is a ``PermanentError``, never a verdict: ``inf >= 0.8`` would pass
    and every comparison with NaN is false, so either way the gate would judge on nothing.
    """
    for whose, metrics in (("candidate", candidate), (f"champion {champion_version}", champion or {})):
        bad = sorted(name for name, value in metrics.items() if name in rules and not math.isfinite(value))
        if bad:
            shown = ", ".join(f"{name}={metrics[name]}" for name in bad)
            raise PermanentError(f"quality gate: the {whose}'s metric {shown} is not a number; nothing was judged")
    rows: list[Row] = []
    reasons: list[str] = []
    for name in required:
        if name not in candidate:
            reasons.append(f"required metric {name!r} is missing")
            rows.append(Row(name, None, None, f"{name} present", False))
    for name, rule in rules.items():
        value = candidate.get(name)
        if value is None:
            continue
        best = champion.get(name) if champion else None
        for check, ok in _checks(name, rule, value, best, champion_version):
            rows.append(Row(name, value, best, check, ok))
            if not ok:
                reasons.append(check)
    passed = not reasons
    if champion is None:
        reasons.append("no champion yet: relative thresholds not applied")
    return Verdict(passed, rows, champion_version, reasons)


def _checks(
    name: str, rule: MetricRule, value: float, best: float | None, champion_version: str | None
) -> list[tuple[str, bool]]:
    checks: list[tuple[str, bool]] = []
    if rule.min is not None:
        checks.append((f"{name} {_fmt(value)} >= {_fmt(rule.min)}", value >= rule.min))
    if rule.max is not None:
        checks.append((f"{name} {_fmt(value)} <= {_fmt(rule.max)}", value <= rule.max))
    if best is not None:
        gain = value - best if rule.higher_is_better else best - value
        versus = f"vs champion {champion_version} ({_fmt(best)})"
        if rule.min_improvement is not None:
            checks.append((f"{name} improves {_signed(gain)} {versus} >= {_signed(rule.min_improvement)}",
                           gain >= rule.min_improvement))
        if rule.max_regression is not None:
            checks.append((f"{name} regresses {_signed(-gain)} {versus} <= {_signed(rule.max_regression)}",
                           -gain <= rule.max_regression))
    return checks


def _fmt(value: float) -> str:
    return f"{value:.6g}"


def _signed(value: float) -> str:
    return f"{value:+.6g}"
