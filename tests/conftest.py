"""Shared test helpers: sample deliveries, a controllable clock, an engine on a temp SQLite ledger."""

from __future__ import annotations

import copy
import functools
import gc
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.actions import ActionKind, ActionResult, PlannedAction
from shared.adapters.dryrun import DryRunAdapter
from shared.engine import Engine
from shared.ledger.sqlite import SqliteLedger
from shared.reactions import Rules, load_rules, read_rules

EVENTS = Path(__file__).parent / "events"
ROOT = Path(__file__).parent.parent
WORKSPACE = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-mlops/providers/"
    "Microsoft.MachineLearningServices/workspaces/mlw-prod"
)
SAMPLES = sorted(p.stem for p in (EVENTS / "eventgrid").glob("*.json"))
# The shipped reactions.yaml allows the workspaces in this setting (Bicep sets it in Azure): the samples' workspace.
# Set for the whole test process and the CLIs and workers it starts.
os.environ.setdefault("MLREACTOR_SUBSCRIBED_WORKSPACES", WORKSPACE)


@pytest.fixture(autouse=True)
def _nothing_frozen_after() -> Iterator[None]:
    """A test that builds the engine through ``shared.runtime`` freezes what the process holds then, its fixtures
    included (``shared/longlived.py``); unfrozen, they are collected as usual once they are garbage."""
    yield
    gc.unfreeze()


def delivery(name: str, schema: str = "eventgrid") -> list[dict[str, Any]]:
    """A documented sample delivery (a JSON array), as a fresh mutable copy."""
    return copy.deepcopy(json.loads((EVENTS / schema / f"{name}.json").read_text()))


def event(name: str, schema: str = "eventgrid", **changes: Any) -> dict[str, Any]:
    """The single event of a sample delivery, with top-level fields changed."""
    obj = delivery(name, schema)[0]
    obj.update(changes)
    return obj


@functools.cache
def indexed() -> dict[str, Any]:
    """The functions the host indexes, by name (``get_functions`` may be called once per app, as the host does)."""
    import function_app

    return {f.get_function_name(): f for f in function_app.app.get_functions()}


class ProcessDied(BaseException):
    """The worker process dying mid-event: not an Exception, so nothing in the engine catches it; nothing after it
    runs, nothing is released or recorded."""


@dataclass
class FakeClock:
    """A clock the test moves by hand."""

    current: datetime = field(default_factory=lambda: datetime(2026, 11, 20, 18, 0, tzinfo=UTC))

    def now(self) -> datetime:
        return self.current

    def advance(self, **kwargs: float) -> None:
        self.current += timedelta(**kwargs)


class RecordingAdapter(DryRunAdapter):
    """A dry-run adapter that also keeps every action it carried out, in order, so tests can count effects."""

    def __init__(self, kind: ActionKind) -> None:
        super().__init__(kind)
        self.executed: list[PlannedAction] = []

    def execute(self, action: PlannedAction) -> ActionResult:
        self.executed.append(action)
        return super().execute(action)


class ScriptedAdapter(RecordingAdapter):
    """A recording adapter whose next calls can be told to fail (transiently or for good)."""

    def __init__(self, kind: ActionKind) -> None:
        super().__init__(kind)
        self.failures: list[BaseException] = []

    def fail_next(self, *errors: BaseException) -> None:
        self.failures.extend(errors)

    def execute(self, action: PlannedAction) -> ActionResult:
        if self.failures:
            raise self.failures.pop(0)
        return super().execute(action)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def shipped_rules() -> Rules:
    return load_rules(ROOT / "reactions.yaml")


def rules_from(text: str) -> Rules:
    """Rules from YAML text; the sample workspace is allowed unless the text says otherwise."""
    if "allowed_workspaces" not in text:
        text = f"allowed_workspaces: [{WORKSPACE}]\n{text}"
    return read_rules(text, "test rules")


@dataclass
class Harness:
    engine: Engine
    ledger: SqliteLedger
    adapters: dict[ActionKind, ScriptedAdapter]
    clock: FakeClock

    def executed(self, kind: ActionKind | None = None) -> list[PlannedAction]:
        kinds = [kind] if kind else list(self.adapters)
        return [a for k in kinds for a in self.adapters[k].executed]


@pytest.fixture
def make_engine(tmp_path: Path, clock: FakeClock, shipped_rules: Rules) -> Iterator[Callable[..., Harness]]:
    ledgers: list[SqliteLedger] = []

    def build(rules: Rules | None = None, **kwargs: Any) -> Harness:
        ledger = SqliteLedger(tmp_path / "ledger.sqlite3")
        ledgers.append(ledger)
        adapters = {kind: ScriptedAdapter(kind) for kind in ActionKind}
        engine = Engine(rules or shipped_rules, ledger, dict(adapters), clock=clock, **kwargs)
        return Harness(engine, ledger, adapters, clock)

    yield build
    for ledger in ledgers:
        ledger.close()

