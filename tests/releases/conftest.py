"""Helpers of the release-signal tests: the documented hook payloads and ledger records of releases mlreactor queued."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

from shared.ledger.port import ReleaseRecord
from tests.conftest import EVENTS, WORKSPACE

QUEUED = datetime(2026, 11, 20, 17, 0, tzinfo=UTC)


def payload(name: str) -> dict[str, Any]:
    """A documented hook payload (tests/events/hooks/azure_devops or github), as a fresh mutable copy."""
    folder, _, stem = name.partition("/")
    return copy.deepcopy(json.loads((EVENTS / "hooks" / folder / f"{stem}.json").read_text()))


def queued(release_id: str, target: str = "azure-devops-pipeline", scope: str = "contoso",
           environment: str = "production", **changes: Any) -> ReleaseRecord:
    """What TrackedReleases records when mlreactor queues a release: this is where model and version come from."""
    values: dict[str, Any] = {
        "target": target, "scope": scope, "release_id": release_id, "model": "credit-fraud", "version": "2",
        "correlation_id": "chain-7", "workspace": WORKSPACE, "queued_at": QUEUED, "project": "mlops",
        "definition": "42", "environment": environment,
        "url": f"https://dev.azure.com/{scope}/mlops/_build/results?buildId={release_id}", "release_key": "k" * 64,
        **changes,
    }
    return ReleaseRecord(**values)


# The fake Azure DevOps and the real release adapter, shared with the release tests (tests/devops/conftest.py).
from tests.devops.conftest import devops_cache_dir, devops_settings, fake_devops, make_release  # noqa: E402, F401

# The fake GitHub and the real GitHub release adapter, for the GitHub reconciler tests (tests/github/conftest.py).
from tests.github.conftest import app_key, fake_github, github_settings, make_github_release  # noqa: E402, F401
