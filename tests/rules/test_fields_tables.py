"""One table of what each event kind provides, one of what each action returns: checked against the code that
builds them and against the README, so ``rules check``, the renderer and the docs cannot drift apart."""

from __future__ import annotations

import ast
from collections.abc import Mapping
from typing import Any

import pytest

from shared.actions import RESULT_FIELDS, ActionKind
from shared.event_fields import CONTEXT_FIELDS, paths_for, readme_table
from shared.events import AzureMLEvent, EventKind, parse_event
from shared.gate import MetricRule, evaluate
from shared.releases.intake import release_event
from shared.releases.signals import Signal, TargetKind
from tests.conftest import ROOT, SAMPLES, event
from tests.releases.conftest import QUEUED, queued

KINDS = [k for k in EventKind if k is not EventKind.UNKNOWN]


def flatten(value: Any, declared: set[str], prefix: str = "") -> set[str]:
    """The paths a context holds, stopping at mappings the table declares free-keyed (``run.tags.*``)."""
    if prefix and f"{prefix}.*" in declared:
        return {f"{prefix}.*"}
    if isinstance(value, Mapping):
        return {p for k, v in value.items() for p in flatten(v, declared, f"{prefix}.{k}" if prefix else str(k))}
    return {prefix}


def sample_of(kind: EventKind) -> AzureMLEvent:
    """A documented sample delivery of ``kind``; release events are not Event Grid deliveries: the intake builds
    them from a queued release and a signal, as hooks and the reconciler do."""
    if kind.value.startswith("Release"):
        signal = Signal(target=TargetKind.AZURE_DEVOPS_PIPELINE, scope="contoso", release_id="11", kind=kind,
                        status="a status", source_type="ms.vss-pipelines.run-state-changed-event")
        return release_event(queued("11"), signal, QUEUED, "hook")
    for name in SAMPLES:
        parsed = parse_event(event(name))
        if parsed.kind is kind:
            return parsed
    raise AssertionError(f"no sample event of kind {kind.value} in tests/events: add one")


@pytest.mark.parametrize("kind", KINDS, ids=[k.value for k in KINDS])
def test_the_table_lists_exactly_what_the_renderer_gets(kind: EventKind) -> None:
    """GIVEN a sample event of every kind WHEN its template context is built THEN its paths are the table's."""
    declared = set(paths_for(kind))
    assert flatten(sample_of(kind).context(), declared) == declared


def test_every_event_kind_has_its_rows() -> None:
    covered = {kind for row in CONTEXT_FIELDS for kind in row.kinds}
    assert covered == set(KINDS)


def test_the_readme_shows_the_table() -> None:
    """The README's "Paths into the event context" table is ``readme_table()``; regenerate it when this fails."""
    assert readme_table() in (ROOT / "README.md").read_text(encoding="utf-8"), readme_table()


def test_the_gate_returns_the_fields_declared_for_it() -> None:
    verdict = evaluate({"auc": MetricRule(min=0.8)}, ["auc"], {"auc": 0.9}, None, None)
    data = {**verdict.as_data({"auc": 0.9}), "model": "m", "version": "1", "notes": []}
    declared = {f.removesuffix(".*") for f in RESULT_FIELDS[ActionKind.QUALITY_GATE]}
    assert set(data) == declared


def test_every_action_kind_declares_its_result() -> None:
    assert set(RESULT_FIELDS) == set(ActionKind)


#: Which action kinds each adapter module answers (the gate's result is checked above, from the verdict itself).
ADAPTERS = {
    "azureml/pipelines.py": {ActionKind.RUN_PIPELINE},
    "azureml/tags.py": {ActionKind.TAG_MODEL, ActionKind.TAG_RUN},
    "devops/adapter.py": {ActionKind.QUEUE_RELEASE},
    "github/adapter.py": {ActionKind.QUEUE_RELEASE},
    "notify/__init__.py": {ActionKind.NOTIFY},
    "eventgrid_out.py": {ActionKind.PUBLISH_EVENT},
}


def result_keys(source: str) -> set[str]:
    """The keys of every ``ActionResult(..., data={...})`` literal in an adapter module."""
    keys: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "ActionResult":
            for keyword in node.keywords:
                if keyword.arg == "data" and isinstance(keyword.value, ast.Dict):
                    keys |= {k.value for k in keyword.value.keys if isinstance(k, ast.Constant)}
    return keys


@pytest.mark.parametrize("module", sorted(ADAPTERS))
def test_each_live_adapter_returns_only_declared_fields(module: str) -> None:
    """GIVEN what an adapter puts in its results WHEN compared with RESULT_FIELDS THEN it returns nothing
    undeclared, so ``if: release.url`` in a rule checks against what the live adapters really return."""
    found = result_keys((ROOT / "shared" / "adapters" / module).read_text(encoding="utf-8"))
    declared = {f.removesuffix(".*") for kind in ADAPTERS[module] for f in RESULT_FIELDS[kind]}
    assert found <= declared, sorted(found - declared)


@pytest.mark.parametrize("kind", sorted({k for kinds in ADAPTERS.values() for k in kinds}))
def test_every_declared_field_is_returned_by_an_adapter_of_its_kind(kind: ActionKind) -> None:
    """``queue_release`` has two targets (Azure DevOps, GitHub Actions): what RESULT_FIELDS declares for a kind is
    what its adapters return together; a field only one target fills is named in the README's result table."""
    modules = [module for module, kinds in ADAPTERS.items() if kind in kinds]
    found = set().union(*(result_keys((ROOT / "shared" / "adapters" / m).read_text(encoding="utf-8")) for m in modules))
    # a module answering several kinds (tags.py: tag_model, tag_run) returns what all of them declare
    declared = {f.removesuffix(".*") for m in modules for k in ADAPTERS[m] for f in RESULT_FIELDS[k]}
    assert found == declared
