"""Azure DevOps as a release target: the adapter, its credentials, and the judgement of its approvals."""

from __future__ import annotations

from shared.adapters.devops.adapter import DevOpsReleaseAdapter, Queued
from shared.adapters.devops.auth import DEVOPS_SCOPE, TokenCredential
from shared.adapters.releases.once import release_key

__all__ = ["DEVOPS_SCOPE", "DevOpsReleaseAdapter", "Queued", "TokenCredential", "release_key"]
