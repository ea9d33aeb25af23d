"""Hypothesis throws arbitrary and mutated payloads at replay: every one gets an outcome, nothing crashes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.adapters import build_adapters
from shared.engine import Engine
from shared.ledger.sqlite import SqliteLedger
from shared.outcomes import Outcome
from shared.reactions import Rules
from shared.settings import Settings
from tests.conftest import SAMPLES, delivery

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)


@st.composite
def mutated_samples(draw: st.DrawFn) -> Any:
    """A documented sample with one field deleted, replaced by junk, or re-cased."""
    sample = delivery(draw(st.sampled_from(SAMPLES)), draw(st.sampled_from(["eventgrid", "cloudevents"])))
    target = sample[0] if draw(st.booleans()) or not isinstance(sample[0].get("data"), dict) else sample[0]["data"]
    key = draw(st.sampled_from(sorted(target)))
    action = draw(st.sampled_from(["delete", "junk", "recase"]))
    if action == "delete":
        del target[key]
    elif action == "junk":
        target[key] = draw(json_values)
    else:
        target[key.swapcase()] = target.pop(key)
    return sample


payloads = st.one_of(
    mutated_samples(),
    json_values,
    st.lists(st.one_of(mutated_samples().map(lambda d: d[0]), json_values), max_size=4),
)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory, shipped_rules_module: Rules) -> Iterator[Engine]:
    ledger = SqliteLedger(tmp_path_factory.mktemp("fuzz") / "ledger.sqlite3")
    yield Engine(shipped_rules_module, ledger, build_adapters(Settings(dry_run=True), shipped_rules_module, ledger))
    ledger.close()


@pytest.fixture(scope="module")
def shipped_rules_module() -> Rules:
    from shared.reactions import load_rules
    from tests.conftest import ROOT

    return load_rules(ROOT / "reactions.yaml")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=payloads)
def test_any_payload_gets_an_outcome_and_never_an_unexpected_exception(engine: Engine, payload: Any) -> None:
    outcomes = engine.handle_delivery(json.dumps(payload))
    assert outcomes or payload == []
    for outcome in outcomes:
        assert outcome.outcome in set(Outcome) - {Outcome.FAILED}, "dry-run never fails transiently"
        json.dumps(outcome.as_dict())  # always serialisable for --json


@settings(max_examples=100, deadline=None)
@given(raw=st.binary(max_size=200) | st.text(max_size=200))
def test_bytes_that_are_not_json_are_quarantined(tmp_path_factory: pytest.TempPathFactory, raw: Any) -> None:
    from shared.ops.cli import main

    folder = tmp_path_factory.mktemp("raw")
    path = Path(folder) / "delivery.json"
    path.write_bytes(raw if isinstance(raw, bytes) else raw.encode())
    assert main(["replay", "--json", "--state", str(folder), str(path)]) == 0
