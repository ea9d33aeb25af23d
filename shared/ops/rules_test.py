"""``mlreactor rules test [DIR]``: a folder of cases — an event and what must happen — run against the rules.

Like ``st2-rule-tester`` or ``argo lint`` in CI: a platform team gates a rule change on its own cases. Each case runs
in-process through the real engine (matching, throttle, ``once_per``, ``if``, rendering) on a scratch ledger, with
adapters that record what would be sent and send nothing. A case file (YAML, next to its event files):

```yaml
description: a drift breach launches the retraining pipeline
event: events/drift.json          # a delivery file relative to this case, or the event itself inline
expect:                           # every key is optional: only what is given is compared
  outcome: acted
  reason: "action(s) done"        # a part of the reason
  rules:
    retrain-on-drift: fired
    notify-failed-runs: skipped   # or {skipped: "part of the reason"}
  actions:                        # in this order, others may come between; [] means none at all
    - rule: retrain-on-drift
      kind: run_pipeline
      status: done
      params: {job_yaml: pipelines/retrain.yml, inputs: {monitor: credit_card_fraud_monitor}}
```

``steps: [{event, expect}, ...]`` runs several events in order on one ledger (the second drift inside the window:
``outcome: ignored``). The clock is each event's own ``eventTime``, so windows behave the same on every run.

Recorded results stand in for what a live adapter returns (``stand_in_result``): a release's ``url``, a job's
``job``, taken from the rendered parameters where they share a name (``model``, ``environment``), else
``test:<kind>.<field>``.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.actions import ActionAdapter, ActionKind, ActionResult, PlannedAction, stand_in_result
from shared.adapters.gate import GateAdapter, UnknownState
from shared.engine import Engine
from shared.events import AzureMLEvent, ParseFailure, parse_delivery
from shared.jsontext import canonical
from shared.ledger.sqlite import SqliteLedger
from shared.outcomes import EventOutcome
from shared.reactions import Rules, evaluate, suggest
from shared.rules_yaml import YamlProblem
from shared.rules_yaml import load as load_yaml


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ExpectedAction(_Strict):
    rule: str | None = None
    kind: str | None = None
    status: str | None = None
    detail: str | None = Field(default=None, description="A part of the action's detail.")
    params: dict[str, Any] | None = Field(default=None, description="A subset of the rendered parameters.")


class SkippedRule(_Strict):
    skipped: str = Field(description="A part of the reason the rule did not fire.")


class Expect(_Strict):
    outcome: str | None = None
    reason: str | None = None
    rules: dict[str, Literal["fired", "skipped"] | SkippedRule] = Field(default_factory=dict)
    actions: list[ExpectedAction] | None = None


class Step(_Strict):
    event: str | dict[str, Any] | list[Any]
    expect: Expect = Field(default_factory=Expect)


class Case(_Strict):
    description: str = ""
    event: str | dict[str, Any] | list[Any] | None = None
    expect: Expect = Field(default_factory=Expect)
    steps: list[Step] | None = None

    def all_steps(self) -> list[Step]:
        if self.steps is not None:
            return self.steps
        if self.event is None:
            raise ValueError("a case needs event (with expect) or steps")
        return [Step(event=self.event, expect=self.expect)]


@dataclass(frozen=True)
class Mismatch:
    where: str
    expected: Any
    actual: Any

    def lines(self) -> list[str]:
        return [f"  {self.where}:", f"    - expected: {_show(self.expected)}", f"    + actual:   {_show(self.actual)}"]


@dataclass
class CaseResult:
    name: str
    file: Path
    description: str = ""
    mismatches: list[Mismatch] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.mismatches

    def as_dict(self) -> dict[str, Any]:
        return {
            "case": self.name, "file": str(self.file), "passed": self.passed, "description": self.description,
            "mismatches": [{"where": m.where, "expected": m.expected, "actual": m.actual} for m in self.mismatches],
        }


def default_dir(rules_path: Path) -> Path:
    """``reactions.yaml`` → ``reactions.tests/`` beside it."""
    return rules_path.with_name(f"{rules_path.stem}.tests")


def case_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.y*ml") if p.is_file())


def run_cases(rules: Rules, folder: Path) -> Iterator[CaseResult]:
    """Each case file in ``folder``, in name order, on a fresh scratch ledger."""
    for path in case_files(folder):
        yield run_case(rules, path)


def run_case(rules: Rules, path: Path) -> CaseResult:
    result = CaseResult(path.stem, path)
    try:
        case = Case.model_validate(load_yaml(path.read_text(encoding="utf-8")).data)
        steps = case.all_steps()
    except (OSError, UnicodeDecodeError, YamlProblem, ValidationError, ValueError) as exc:
        result.mismatches.append(Mismatch("case file", "a valid case", _first_line(exc)))
        return result
    result.description = case.description
    with tempfile.TemporaryDirectory(prefix="mlreactor-rules-test-") as scratch:
        ledger = SqliteLedger(Path(scratch) / "ledger.sqlite3")
        clock = _EventClock()
        recorder = _Recorder()
        adapters: dict[ActionKind, ActionAdapter] = {kind: recorder for kind in ActionKind}
        adapters[ActionKind.QUALITY_GATE] = GateAdapter(UnknownState(), clock)
        engine = Engine(rules, ledger, adapters, clock=clock)
        try:
            for number, step in enumerate(steps):
                prefix = f"steps[{number}]." if case.steps is not None else ""
                try:
                    events = _events(step.event, path.parent)
                except (OSError, ValueError) as exc:
                    result.mismatches.append(Mismatch(f"{prefix}event", "a readable delivery", _first_line(exc)))
                    continue
                for event in events:
                    clock.at = event.time if isinstance(event, AzureMLEvent) and event.time else clock.at
                    outcome = engine.handle(event)
                    result.mismatches.extend(_compare(step.expect, outcome, event, rules, recorder, prefix))
        finally:
            ledger.close()
    return result


def _events(source: str | dict[str, Any] | list[Any], base: Path) -> list[AzureMLEvent | ParseFailure]:
    payload = (base / source).read_text(encoding="utf-8") if isinstance(source, str) else json.dumps(source)
    return parse_delivery(payload)


def _compare(expect: Expect, outcome: EventOutcome, event: AzureMLEvent | ParseFailure, rules: Rules,
             recorder: _Recorder, prefix: str) -> list[Mismatch]:
    found: list[Mismatch] = []
    if expect.outcome is not None and expect.outcome != outcome.outcome.value:
        found.append(Mismatch(f"{prefix}outcome", expect.outcome, f"{outcome.outcome.value} ({outcome.reason})"))
    if expect.reason is not None and expect.reason not in outcome.reason:
        found.append(Mismatch(f"{prefix}reason", f"… {expect.reason} …", outcome.reason))
    names = [r.name for r in rules.spec.rules]
    for name, wanted in expect.rules.items():
        where = f"{prefix}rules.{name}"
        if name not in names:
            found.append(Mismatch(where, "a rule of this file", f"no such rule{suggest(name, names)}"))
            continue
        status, reason = _rule_status(name, outcome, event, rules)
        if isinstance(wanted, SkippedRule):
            if status != "skipped" or wanted.skipped not in reason:
                found.append(Mismatch(where, f"skipped (… {wanted.skipped} …)", f"{status} ({reason})"))
        elif wanted != status:
            found.append(Mismatch(where, wanted, f"{status} ({reason})"))
    if expect.actions is not None:
        found.extend(_compare_actions(expect.actions, outcome, recorder, prefix))
    return found


def _rule_status(name: str, outcome: EventOutcome, event: AzureMLEvent | ParseFailure, rules: Rules) -> tuple[str, str]:
    if name in outcome.reactions:
        return "fired", "fired"
    if isinstance(event, ParseFailure):
        return "skipped", f"the event cannot be parsed: {event.reason}"
    rule = next(r for r in rules.spec.rules if r.name == name)
    verdict = evaluate(rule, event)
    if not verdict.matched:
        return "skipped", verdict.reason
    held = outcome.reason.find(f"{name} (")
    if held != -1:  # "throttled: retrain-on-drift (once within 6h)"
        return "skipped", "throttled: " + outcome.reason[held + len(name) + 2:].split(")", 1)[0]
    return "skipped", f"{outcome.outcome.value}: {outcome.reason}"


def _compare_actions(expected: list[ExpectedAction], outcome: EventOutcome, recorder: _Recorder,
                     prefix: str) -> list[Mismatch]:
    actual = [
        {"rule": a.rule, "kind": a.kind, "status": a.status, "detail": a.detail, "params": recorder.params.get(a.key)}
        for a in outcome.actions
    ]
    shown = [f"{a['rule']}/{a['kind']} [{a['status']}]" for a in actual]
    if not expected:
        return [] if not actual else [Mismatch(f"{prefix}actions", "none", shown)]
    found: list[Mismatch] = []
    cursor = 0
    for number, want in enumerate(expected):
        where = f"{prefix}actions[{number}]"
        label = f"{want.rule or '*'}/{want.kind or '*'}"
        match = next((i for i in range(cursor, len(actual)) if (want.rule in (None, actual[i]["rule"]) and
                                                                  want.kind in (None, actual[i]["kind"]))), None)
        if match is None:
            found.append(Mismatch(where, f"{label} (after the ones before it)", shown[cursor:] or "no more actions"))
            continue
        cursor = match + 1
        got = actual[match]
        if want.status is not None and want.status != got["status"]:
            found.append(Mismatch(f"{where} {label} status", want.status, f"{got['status']} ({got['detail']})"))
        if want.detail is not None and want.detail not in str(got["detail"]):
            found.append(Mismatch(f"{where} {label} detail", f"… {want.detail} …", got["detail"]))
        if want.params is not None:
            if got["params"] is None:
                found.append(Mismatch(f"{where} {label} params", want.params, f"not rendered ({got['status']})"))
            else:
                found.extend(Mismatch(f"{where} {label} params.{path}", e, a)
                             for path, e, a in _subset(want.params, got["params"], ""))
    return found


def _subset(expected: Any, actual: Any, path: str) -> Iterator[tuple[str, Any, Any]]:
    """Where ``expected`` is not part of ``actual``: mappings compare the keys given, anything else is equal."""
    if isinstance(expected, Mapping) and isinstance(actual, Mapping):
        for key, value in expected.items():
            where = f"{path}.{key}" if path else str(key)
            if key not in actual:
                yield where, value, "(absent)"
            else:
                yield from _subset(value, actual[key], where)
    elif expected != actual:
        yield path or "(value)", expected, actual


class _Recorder:
    """Records each action's rendered parameters by key and answers with the fields a live adapter would return."""

    live = False

    def __init__(self) -> None:
        self.params: dict[str, dict[str, Any]] = {}

    def execute(self, action: PlannedAction) -> ActionResult:
        rendered = action.params.model_dump(mode="json", exclude={"id", "if_"})
        self.params[action.key] = rendered
        return ActionResult(external_id=f"test-{action.short_key}", detail=f"would {action.kind.value}",
                            data=stand_in_result(action.kind, rendered, "test"))


class _EventClock:
    """Now is the event being handled's own time, so throttle windows in cases do not depend on the day they run."""

    def __init__(self) -> None:
        self.at = datetime.now(UTC)

    def now(self) -> datetime:
        return self.at


def _show(value: Any) -> str:
    return value if isinstance(value, str) else canonical(value)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if isinstance(exc, OSError) else " ".join(text.split())
