"""GitHub Actions as a release target: a gated ``workflow_dispatch``, its credentials, the judgement of reviewers."""

from __future__ import annotations

from shared.adapters.github.adapter import GitHubReleaseAdapter

__all__ = ["GitHubReleaseAdapter"]
