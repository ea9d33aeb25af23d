"""The typed release events: what rules and templates see, and that a stored one parses back (quarantine, redrive)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared.events import RELEASE_EVENTS, EventKind, ReleaseDeployed, parse_event
from shared.reactions import read_rules
from shared.releases.intake import release_event
from shared.releases.signals import Signal, TargetKind
from tests.conftest import WORKSPACE
from tests.releases.conftest import QUEUED, queued


def signal(kind: EventKind, **changes: object) -> Signal:
    values: dict[str, object] = {"target": TargetKind.AZURE_DEVOPS_PIPELINE, "scope": "contoso",
                                 "release_id": "11", "kind": kind, "status": "run completed: succeeded",
                                 "source_type": "ms.vss-pipelines.run-state-changed-event", **changes}
    return Signal.model_validate(values)


def test_a_release_event_carries_the_recorded_model_and_the_targets_words() -> None:
    event = release_event(queued("11"), signal(EventKind.RELEASE_DEPLOYED, actor="Dana"), QUEUED, "hook")
    assert isinstance(event, ReleaseDeployed)
    assert (event.event_type, event.source, event.correlation_id) == ("ReleaseDeployed", WORKSPACE, "chain-7")
    context = event.context()
    assert context["model"] == {"name": "credit-fraud", "version": "2", "id": "credit-fraud:2",
                                "asset": "azureml:credit-fraud:2", "tags": {}, "properties": {}}
    assert {k: context["release"][k] for k in ("target", "scope", "id", "transition", "actor", "via", "status")} == {
        "target": "azure-devops-pipeline", "scope": "contoso", "id": "11", "transition": "ReleaseDeployed",
        "actor": "Dana", "via": "hook", "status": "run completed: succeeded"}
    assert context["workspace"]["name"] == "mlw-prod"


def test_the_event_id_is_the_release_and_the_transition_only() -> None:
    record = queued("11")
    by_hook = release_event(record, signal(EventKind.RELEASE_DEPLOYED, notification="n-1"), QUEUED, "hook")
    by_reconciler = release_event(record, signal(EventKind.RELEASE_DEPLOYED), QUEUED + timedelta(hours=1),
                                  "reconciler")
    assert by_hook.key == by_reconciler.key
    assert release_event(record, signal(EventKind.RELEASE_FAILED), QUEUED, "hook").key != by_hook.key
    assert release_event(queued("12"), signal(EventKind.RELEASE_DEPLOYED), QUEUED, "hook").key != by_hook.key
    first = release_event(record, signal(EventKind.RELEASE_AWAITING_APPROVAL), QUEUED, "reconciler", reminder=1)
    second = release_event(record, signal(EventKind.RELEASE_AWAITING_APPROVAL), QUEUED, "reconciler", reminder=2)
    assert len({first.key, second.key, by_hook.key}) == 3


@pytest.mark.parametrize("kind", list(RELEASE_EVENTS))
def test_a_stored_release_event_parses_back_to_the_same_event(kind: EventKind) -> None:
    record = queued("11")
    event = release_event(record, signal(kind, comment="why"), QUEUED, "hook")
    again = parse_event(event.raw())
    assert type(again) is type(event) and again.kinds == frozenset({kind})
    assert again.key == event.key and again.context() == event.context()


def test_rules_may_name_every_release_kind() -> None:
    rules = read_rules(f"""
allowed_workspaces: [{WORKSPACE}]
rules:
  - name: all-release-kinds
    on: [{", ".join(k.value for k in RELEASE_EVENTS)}]
    do:
      - tag_model: {{set: {{mlreactor.release_state: "{{{{ release.transition }}}}"}}}}
""", "test")
    assert set(rules.spec.rules[0].on) == set(RELEASE_EVENTS)
