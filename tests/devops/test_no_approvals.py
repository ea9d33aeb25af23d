"""The app never approves: no Python in the repository names an approvals endpoint (Azure DevOps) or a deployment
review endpoint (GitHub) or sends a PATCH to Azure DevOps, and no test run ever sent Azure DevOps or GitHub anything
but discovery, reads, the App's token request and the queueing POST."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from tests.conftest import ROOT
from tests.devops.conftest import CLASSIC_RULES, Release
from tests.fakes.azure_devops import FakeAzureDevOps
from tests.fakes.github import FakeGitHub
from tests.github.conftest import GitHubRelease

#: SDK methods and REST paths that approve or reject: Release approvals (classic), pipeline approvals and checks (YAML);
#: GitHub: reviewing pending deployments, custom deployment protection rules, approving a fork's workflow run.
APPROVAL_API = re.compile(
    r"update_release_approvals?\b|update_approvals?\b|get_approvals?\b|_apis/pipelines/approvals"
    r"|_apis/release/approvals|pipelines/checks/approvals|ReleaseApproval\b|ApprovalStatus\b"
    r"|pending_deployments|deployment_protection_rule|actions/runs/[^\s\"']*/approve\b|review_pending|review_custom",
    re.IGNORECASE,
)
PATCH = re.compile(r"""["']PATCH["']|http_method\s*=\s*["']PATCH|\.patch\(""", re.IGNORECASE)


def _python_files() -> list[Path]:
    return [
        p for p in ROOT.rglob("*.py")
        if not any(part.startswith(".") or part in ("node_modules", "build") for part in p.relative_to(ROOT).parts)
        and p != Path(__file__)
    ]


def _speaks_to_azure_devops(text: str) -> bool:
    """Code that talks to Azure DevOps: only there could a PATCH be an approval (Azure ML run history PATCHes tags)."""
    return "azure.devops" in text or "msrest" in text or "dev.azure.com" in text


def test_no_python_file_in_the_repository_calls_an_approval_api_or_sends_a_patch_to_azure_devops() -> None:
    files = _python_files()
    offenders = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in files
        for text in [path.read_text(encoding="utf-8")]
        for number, line in enumerate(text.splitlines(), 1)
        if APPROVAL_API.search(line) or (PATCH.search(line) and _speaks_to_azure_devops(text))
    ]
    assert len(files) > 20, "the scan must see the repository"
    assert offenders == []


def test_the_scan_recognises_an_approval_call() -> None:
    assert APPROVAL_API.search("client.update_release_approval(approval, project, approval_id)")
    assert APPROVAL_API.search('url = f"{org}/{project}/_apis/pipelines/approvals?api-version=7.1"')
    assert PATCH.search("self._send(http_method='PATCH', location_id=...)")
    assert APPROVAL_API.search('f"/repos/{repo}/actions/runs/{run_id}/pending_deployments"')
    assert APPROVAL_API.search('f"/repos/{repo}/actions/runs/{run_id}/deployment_protection_rule"')
    assert APPROVAL_API.search('"/repos/o/r/actions/runs/42/approve"')


def test_queueing_sends_only_discovery_reads_and_the_post(
    make_release: Callable[..., Release], fake_devops: FakeAzureDevOps
) -> None:
    make_release().deliver()
    make_release(CLASSIC_RULES).deliver(id="classic-event")

    assert {r.method for r in fake_devops.requests} <= {"OPTIONS", "GET", "POST"}
    assert not [r for r in fake_devops.requests if "approval" in r.path.lower()]


def test_dispatching_sends_github_only_reads_the_token_request_and_the_dispatch(
    make_github_release: Callable[..., GitHubRelease], fake_github: FakeGitHub
) -> None:
    release = make_github_release(github_app_installation_id=None)
    release.deliver()
    fake_github.reset_next("POST", "/dispatches", after_processing=True)
    release.deliver(id="lost-answer", data={"ModelName": "m2", "ModelVersion": 1})

    posts = {r.path.rsplit("/", 1)[-1] for r in fake_github.calls("POST")}
    assert {r.method for r in fake_github.requests} == {"GET", "POST"}
    assert posts == {"access_tokens", "dispatches"}
    assert not [r for r in fake_github.requests if "pending_deployments" in r.path or "approve" in r.path]
