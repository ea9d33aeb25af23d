"""The roles infra/ grants the app for registries and batch-endpoint datastores, read with pycep (as checkov does).

Each is optional (an empty parameter deploys none), least privilege (the built-in role named in the module, scoped to
the one resource), and named ``guid(scope, principal, role)`` so a redeployment finds it.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest
from pycep import BicepParser

from tests.conftest import ROOT

INFRA = ROOT / "infra"
AZUREML_REGISTRY_USER = "1823dd4f-9b8c-4ab6-ab4e-7397a3684615"
STORAGE_BLOB_DATA_CONTRIBUTOR = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"


@cache
def bicep(relative: str) -> dict[str, Any]:
    return BicepParser().parse(file_path=INFRA / relative)  # type: ignore[no-any-return]


def only_assignment(path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    parsed = bicep(path)
    (assignment,) = [r for r in parsed["resources"].values()
                     if r["type"] == "Microsoft.Authorization/roleAssignments"]
    return parsed, assignment


@pytest.mark.parametrize(
    ("path", "role", "resource_type", "target"),
    [
        ("app/registry-rbac.bicep", AZUREML_REGISTRY_USER, "Microsoft.MachineLearningServices/registries", "registry"),
        ("app/datastore-rbac.bicep", STORAGE_BLOB_DATA_CONTRIBUTOR, "Microsoft.Storage/storageAccounts", "datastore"),
    ],
)
def test_each_role_is_the_documented_built_in_role_on_that_one_resource(
    path: str, role: str, resource_type: str, target: str
) -> None:
    parsed, assignment = only_assignment(path)
    assert parsed["variables"][next(iter(parsed["variables"]))]["value"] == role
    existing = parsed["resources"][target]
    assert existing["type"] == resource_type and existing["existing"] is True
    config = assignment["config"]
    assert config["scope"] == target  # the registry / the storage account, not its resource group
    properties = config["properties"]
    assert properties["principalType"] == "ServicePrincipal"
    assert properties["principalId"] == "appPrincipalId"
    guid = config["name"]["function"]
    assert guid["type"] == "guid" and len(guid["parameters"]) == 3
    assert role in (INFRA / path).read_text()  # the id the comment names, with its source


def test_both_roles_are_optional_parameters_deployed_per_resource_in_its_own_group() -> None:
    main = bicep("main.bicep")
    for parameter, variable, module in (
        ("azureMlRegistryIds", "registryIds", "registryRbac"),
        ("datastoreStorageAccountIds", "datastoreAccountIds", "datastoreRbac"),
    ):
        assert main["parameters"][parameter]["default"] == ""  # optional: empty deploys nothing
        assert parameter in str(main["variables"][variable]["value"])
        deployed = main["modules"][module]["config"]
        assert deployed["loop_type"]["detail"]["array_name"] == variable  # one assignment per resource id given
        assert deployed["config"]["scope"]["function"]["type"] == "resource_group"  # in that resource's group


def test_the_fleet_size_is_sized_against_arms_write_bucket_and_told_to_the_app() -> None:
    """maximumInstanceCount accepts 1 and up, and its default times the per-instance submission cap stays well
    inside ARM's write bucket of 200; the app learns it as MLREACTOR_AZUREML_FLEET_INSTANCES to pace itself."""
    from shared.settings import Settings

    main = bicep("main.bicep")
    parameter = main["parameters"]["maximumInstanceCount"]
    decorators = {d["type"]: d["argument"] for d in parameter["decorators"] if d["type"] in ("min_value", "max_value")}
    assert decorators["min_value"] == 1
    in_flight = parameter["default"] * Settings.model_fields["azureml_max_concurrent_submissions"].default
    assert in_flight <= 0.5 * 200
    settings = main["variables"]["appSettings"]["value"]
    assert "maximumInstanceCount" in str(settings["MLREACTOR_AZUREML_FLEET_INSTANCES"])
