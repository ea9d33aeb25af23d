"""``mlreactor gates check``: every release rule's target, read live and read-only, in a table with the reason; exit 1
when any is not gated. ``/api/health`` shows what the running process last verified, without a request."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.actions import ActionKind
from shared.adapters import build_adapters
from shared.engine import Engine
from shared.ledger.sqlite import SqliteLedger
from shared.ops import views
from shared.ops.cli import main
from shared.ops.gates import check_release_gates
from shared.reactions import load_rules
from shared.settings import Settings
from tests.conftest import WORKSPACE, FakeClock, event
from tests.devops.conftest import PAT
from tests.fakes.azure_devops import FakeAzureDevOps
from tests.fakes.github import FakeGitHub
from tests.github.conftest import FINE_GRAINED

RULES = f"""
allowed_workspaces: [{WORKSPACE}]
rules:
  - name: yaml-release
    on: ModelRegistered
    do:
      - queue_release: {{project: mlops, pipeline_id: 42, environment: production}}
  - name: classic-release
    on: ModelRegistered
    do:
      - queue_release: {{flavour: classic, project: mlops, definition_id: 7, environment: Production}}
  - name: github-release
    on: ModelRegistered
    do:
      - queue_release: {{flavour: github, repository: contoso/ml-release, workflow: release-model.yml, branch: main,
                         environment: production}}
  - name: per-event
    on: ModelRegistered
    do:
      - queue_release: {{project: "{{{{ model.tags.project }}}}", pipeline_id: 42, environment: production}}
"""


@pytest.fixture
def configured(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fake_devops: FakeAzureDevOps, fake_github: FakeGitHub,
    devops_cache_dir: Path,
) -> Path:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    for name, value in {
        "RULES_PATH": str(rules), "DEVOPS_ORGANIZATION_URL": fake_devops.organization_url, "DEVOPS_PAT": PAT,
        "DEVOPS_AUTH": "pat", "DEVOPS_CACHE_DIR": str(devops_cache_dir), "GITHUB_API_URL": fake_github.base,
        "GITHUB_TOKEN": FINE_GRAINED, "STATE_DIR": str(tmp_path),
    }.items():
        monkeypatch.setenv(f"MLREACTOR_{name}", value)
    monkeypatch.setenv("COLUMNS", "300")  # the table is cut to the terminal's width
    return rules


def test_the_table_names_each_rule_its_target_and_why_and_exits_1_when_one_is_not_gated(
    configured: Path, fake_devops: FakeAzureDevOps, fake_github: FakeGitHub, capsys: pytest.CaptureFixture[str],
) -> None:
    fake_devops.set_stage_approval(7, "Production", None)  # the classic stage's approval is automated

    status = main(["gates", "check"])

    out = capsys.readouterr().out
    assert status == 1
    rows = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert "azure-devops-pipeline mlops pipeline 42" in rows["yaml-release[0]"]
    assert " yes " in rows["yaml-release[0]"] and "Approval check by ML Release Board" in rows["yaml-release[0]"]
    assert " NO " in rows["classic-release[0]"] and "automated" in rows["classic-release[0]"]
    assert " yes " in rows["github-release[0]"]
    assert "cannot check: project depend(s) on the event" in rows["per-event[0]"]
    assert not fake_devops.calls("POST") and not fake_github.calls("POST"), "reading only"


def test_with_every_target_gated_the_json_lines_say_so_and_it_exits_0(
    configured: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    configured.write_text(RULES.split("  - name: per-event")[0])

    status = main(["gates", "check", "--json"])

    results = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert status == 0
    assert [r["rule"] for r in results] == ["yaml-release", "classic-release", "github-release"]
    assert all(r["gated"] for r in results)
    github = results[2]["check"]
    assert github["self_approval_blocked"] is True and github["approvers"] == ["team ml-release-board"]


def test_an_unconfigured_target_counts_as_not_gated(configured: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLREACTOR_GITHUB_TOKEN")

    results = check_release_gates(Settings(), load_rules(configured))

    [github] = [r for r in results if r.rule == "github-release"]
    assert not github.gated and "not configured" in github.why


def test_health_reports_the_verdicts_this_process_last_verified_without_asking_again(
    configured: Path, fake_devops: FakeAzureDevOps, tmp_path: Path, clock: FakeClock,
) -> None:
    settings = Settings()
    rules = load_rules(configured)
    ledger = SqliteLedger(tmp_path / "health.sqlite3")
    engine = Engine(rules, ledger, build_adapters(settings, rules, ledger, clock=clock), clock=clock)
    engine.handle_delivery([event("model_registered")])
    requests = len(fake_devops.requests)

    report = views.health(settings, engine)
    ledger.close()

    assert len(fake_devops.requests) == requests
    gates = report["release_gates"]
    assert {v["target"] for v in gates["verified"]} >= {"azure-devops-pipeline", "azure-devops-release"}
    assert gates["all_gated"] is True
    assert engine.adapters[ActionKind.QUEUE_RELEASE].live
