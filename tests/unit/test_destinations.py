"""Destinations are not event data: where a request and its credential go is literal or a setting."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from shared.actions import ActionKind
from shared.errors import RulesError
from shared.ops.cli import main
from shared.outcomes import Outcome
from tests.conftest import WORKSPACE, Harness, delivery, rules_from

Build = Callable[..., Harness]

TEMPLATED = {
    "queue_release": ("organization", '{project: mlops, pipeline_id: 42, environment: production, organization: '
                                      '"https://dev.azure.com/{{ model.tags.org }}"}'),
    "queue_release ": ("repository", '{flavour: github, repository: "contoso/{{ model.tags.repo }}", '
                                     'workflow: release.yml, branch: main, environment: production}'),
    "run_pipeline": ("workspace", '{component: "offline-test:1", workspace: "{{ model.tags.workspace }}"}'),
    "tag_model": ("workspace", '{workspace: "azureml://registries/{{ model.tags.registry }}", set: {a: b}}'),
    "notify": ("channels", '{channels: ["{{ model.tags.channel }}"]}'),
}


@pytest.mark.parametrize("kind", sorted(TEMPLATED))
def test_a_templated_destination_is_refused_on_load_naming_the_rule_action_and_field(kind: str) -> None:
    field, params = TEMPLATED[kind]
    kind = kind.strip()
    with pytest.raises(RulesError) as caught:
        rules_from(f"""
rules:
  - name: sends-where-the-event-says
    on: ModelRegistered
    do:
      - {kind}: {params}
""")
    (error,) = [e for e in caught.value.errors if f"do[0].{kind}.{field}" in e]
    assert "rule 'sends-where-the-event-says'" in error
    assert "must be literal or come from settings, not from event data" in error


def test_rules_check_refuses_a_templated_organization(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "reactions.yaml"
    path.write_text(f"""
version: 1
allowed_workspaces: [{WORKSPACE}]
rules:
  - name: release
    on: ModelRegistered
    do:
      - queue_release: {TEMPLATED["queue_release"][1]}
""")
    assert main(["rules", "check", str(path)]) == 1
    assert "organization decides where the request and its credential go" in capsys.readouterr().err


def test_a_literal_destination_is_accepted() -> None:
    rules_from("""
rules:
  - name: release
    on: ModelRegistered
    do:
      - queue_release: {project: mlops, pipeline_id: 42, environment: production,
                        organization: "https://dev.azure.com/contoso"}
""")


def forge(rules: Any, field: str, template: str) -> Any:
    """A destination template past the loader (as a loader bug would let one through): the engine's own check."""
    action = rules.spec.rules[0].do[0]
    object.__setattr__(action, "params", action.params.model_copy(update={field: template}))
    return rules


def test_at_run_time_a_rendered_workspace_outside_allowed_workspaces_is_refused(make_engine: Build) -> None:
    rules = forge(rules_from("""
rules:
  - name: test-elsewhere
    on: ModelRegistered
    do:
      - run_pipeline: {component: "offline-test:1"}
"""), "workspace", WORKSPACE.replace("mlw-prod", "mlw-{{ model.tags.area }}"))
    h = make_engine(rules)
    (outcome,) = h.engine.handle_delivery(json.dumps(delivery("model_registered")))
    assert outcome.outcome is Outcome.QUARANTINED
    assert "workspaces/mlw-diabetes' is not in allowed_workspaces: refused" in outcome.reason
    assert h.executed(ActionKind.RUN_PIPELINE) == []


def test_at_run_time_a_destination_the_event_chose_is_refused(make_engine: Build) -> None:
    """Defence in depth: were a template to reach a destination (a loader bug), the rendered value is refused."""
    rules = rules_from("""
rules:
  - name: release
    on: ModelRegistered
    do:
      - queue_release: {project: mlops, pipeline_id: 42, environment: production}
""")
    h = make_engine(forge(rules, "organization", "https://{{ model.tags.area }}.example"))
    (outcome,) = h.engine.handle_delivery(json.dumps(delivery("model_registered")))
    assert outcome.outcome is Outcome.QUARANTINED
    assert "organization 'https://diabetes.example' was chosen by the event, not by the rules: refused" \
        in outcome.reason
    assert h.executed(ActionKind.QUEUE_RELEASE) == []
