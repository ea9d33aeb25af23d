"""Fixtures of the end-to-end tests: Azurite (from the ledger tests: skipped locally without it, failing in CI)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.ledger.conftest import azurite  # noqa: F401 - the session's Azurite, shared with the ledger tests


@pytest.fixture(scope="session")
def devops_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One per session: the azure-devops SDK reads its cache folder once, when it is first imported."""
    return tmp_path_factory.mktemp("azure-devops-cache")
