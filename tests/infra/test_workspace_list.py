"""The shipped rules and the Bicep cannot disagree about workspaces: both read one parameter.

The chain: ``azureMlWorkspaceIds`` (azd: ``AZUREML_WORKSPACE_IDS``) → ``workspaceIds`` → one system topic and one
set of subscriptions per id, and the app setting ``MLREACTOR_SUBSCRIBED_WORKSPACES`` = those ids joined → the shipped
``reactions.yaml`` allows ``{from_setting: MLREACTOR_SUBSCRIBED_WORKSPACES}``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from shared.reactions import load_rules
from shared.workspaces import check
from tests.conftest import ROOT, WORKSPACE
from tests.infra.test_bicep import INFRA, bicep


def main_variable(name: str) -> Any:
    return bicep("main.bicep")["variables"][name]["value"]


def test_the_subscribed_workspaces_setting_is_the_list_bicep_subscribes() -> None:
    assert main_variable("appSettings")["MLREACTOR_SUBSCRIBED_WORKSPACES"] == {
        "function": {"type": "join", "parameters": {"input_array": "workspaceIds", "delimiter": ","}}
    }
    split = main_variable("workspaceIds")["operator"]["operands"]["false_value"]
    assert split == {"function": {"type": "split", "parameters": {"input_string": "azureMlWorkspaceIds",
                                                                   "delimiter": ","}}}
    for module in ("workspaceEvents", "workspaceRbac"):
        loop = bicep("main.bicep")["modules"][module]["config"]["loop_type"]["detail"]
        assert loop["array_name"] == "workspaceIds", module
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert parameters["azureMlWorkspaceIds"]["value"] == "${AZUREML_WORKSPACE_IDS}"


def test_the_shipped_rules_allow_what_that_setting_holds() -> None:
    shipped = yaml.safe_load((ROOT / "reactions.yaml").read_text())
    assert shipped["allowed_workspaces"] == {"from_setting": "MLREACTOR_SUBSCRIBED_WORKSPACES"}


def test_whatever_workspaces_are_deployed_the_engine_allows_exactly_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the Bicep expressions make of a parameter value (split on ',', joined with ','), through the rules."""
    deployed = [WORKSPACE, WORKSPACE.replace("mlw-prod", "mlw-fraud").replace("rg-mlops", "rg-fraud")]
    setting = ",".join(",".join(deployed).split(","))
    monkeypatch.setenv("MLREACTOR_SUBSCRIBED_WORKSPACES", setting)
    allowed = load_rules(ROOT / "reactions.yaml").spec.allowed_workspaces
    assert allowed == deployed
    result = check(deployed, allowed)
    assert result.not_allowed == [] and result.not_subscribed == []
