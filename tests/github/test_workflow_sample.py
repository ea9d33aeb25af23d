"""The shipped GitHub workflow is the contract: it declares the inputs mlreactor sends, as strings, names its runs
with the release key, deploys in an environment, and reads event data only through environment variables."""

from __future__ import annotations

import yaml

from shared.actions import GITHUB_INPUTS
from tests.conftest import ROOT


def test_the_sample_workflow_declares_what_mlreactor_sends_and_gates_its_job_on_an_environment() -> None:
    workflow = yaml.safe_load((ROOT / "pipelines" / "release-model.github-workflow.yml").read_text())

    dispatch = workflow[True]["workflow_dispatch"]  # YAML 1.1 reads the key `on` as True
    assert {name: spec["type"] for name, spec in dispatch["inputs"].items()} == dict.fromkeys(GITHUB_INPUTS, "string")
    assert "${{ inputs.release_key }}" in workflow["run-name"]
    [job] = workflow["jobs"].values()
    assert job["environment"] == "production"
    scripts = [step["run"] for step in job["steps"] if "run" in step]
    assert scripts and not [s for s in scripts if "${{" in s]


def test_the_sample_azure_pipeline_names_its_runs_with_the_release_key() -> None:
    pipeline = yaml.safe_load((ROOT / "pipelines" / "release-model.azure-pipelines.yml").read_text())

    assert "${{ parameters.releaseKey }}" in pipeline["name"]
