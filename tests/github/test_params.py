"""A GitHub release rule names its repository, workflow, ref and environment; what only Azure DevOps uses is refused
when the rules load, not ignored."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shared.actions import QueueReleaseParams

GITHUB = {"flavour": "github", "repository": "contoso/ml-release", "workflow": "release-model.yml", "branch": "main",
          "environment": "production"}


def test_a_complete_github_target_loads() -> None:
    assert QueueReleaseParams(**GITHUB).repository == "contoso/ml-release"


@pytest.mark.parametrize(("change", "message"), [
    ({"workflow": None}, "flavour 'github' needs workflow"),
    ({"repository": "ml-release"}, "is not OWNER/REPO"),
    ({"stages_to_skip": ["canary"]}, "flavour 'github' does not use stages_to_skip"),
    ({"parameters": {"release_key": "x"}}, "are set by mlreactor itself"),
])
def test_an_incomplete_or_mixed_github_target_is_refused(change: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        QueueReleaseParams(**{**GITHUB, **change})


def test_every_target_must_name_the_environment_that_holds_it() -> None:
    with pytest.raises(ValidationError, match="environment"):
        QueueReleaseParams(project="mlops", pipeline_id=42)
