"""The shipped release pipeline is the contract: it declares every parameter mlreactor sends, as strings, and its
production stage deploys to an environment (where the approvals and checks hold it)."""

from __future__ import annotations

from collections.abc import Iterator

import yaml

from shared.actions import RELEASE_PARAMETERS
from tests.conftest import ROOT


def test_the_sample_release_pipeline_declares_what_mlreactor_sends_and_gates_production_on_an_environment() -> None:
    pipeline = yaml.safe_load((ROOT / "pipelines" / "release-model.azure-pipelines.yml").read_text())

    declared = {p["name"]: p["type"] for p in pipeline["parameters"]}
    assert declared == {name: "string" for name in RELEASE_PARAMETERS}
    [production] = [s for s in pipeline["stages"] if s["stage"] == "Production"]
    assert [job["environment"] for job in production["jobs"]] == ["production"]
    scripts = list(_scripts(pipeline))
    assert len(scripts) == 2
    assert not [s for s in scripts if "${{" in s or "$(" in s], "event data reaches scripts only through env vars"


def _scripts(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "script":
                yield str(value)
            else:
                yield from _scripts(value)
    elif isinstance(node, list):
        for item in node:
            yield from _scripts(item)
