"""Which rules file every command loads, and the rules commands' answers: check, test, explain --expect."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from shared.ops.cli import main
from tests.conftest import EVENTS, ROOT

WS = ("/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-mlops/providers/"
      "Microsoft.MachineLearningServices/workspaces/mlw-prod")
BROKEN = f"""allowed_workspaces: [{WS}]
rules:
  - name: r
    on: ModelRegistered
    do: [{{tag_model: {{set: {{a: '{{{{ model.idd }}}}'}}}}}}]
"""
MODEL_REGISTERED = str(EVENTS / "eventgrid" / "model_registered.json")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_the_shipped_rules_pass_rules_check_strict(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "rules", "check", "--strict", str(ROOT / "reactions.yaml"))
    assert code == 0, err
    assert out.startswith(f"{ROOT / 'reactions.yaml'}: OK — 12 rule(s)") and "warning" not in out


def test_a_reactions_yaml_in_the_current_directory_is_the_one_checked(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GIVEN a directory with its own broken reactions.yaml WHEN rules check runs there without arguments THEN that
    file is checked (not the bundled one), named on stderr, and the check fails."""
    (tmp_path / "reactions.yaml").write_text(BROKEN)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLREACTOR_RULES_PATH", raising=False)
    code, _, err = run(capsys, "rules", "check")
    assert code == 1
    assert err.splitlines()[0] == "mlreactor: rules: reactions.yaml (current directory)"
    assert "reactions.yaml:5:" in err and "model.idd" in err


def test_the_setting_beats_the_current_directory_and_config_beats_the_setting(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "reactions.yaml").write_text(BROKEN)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLREACTOR_RULES_PATH", str(ROOT / "reactions.yaml"))
    code, out, err = run(capsys, "rules", "check", "--json")
    assert code == 0 and f"mlreactor: rules: {ROOT / 'reactions.yaml'} (MLREACTOR_RULES_PATH)" in err
    assert json.loads(out)["rules_file"] == str(ROOT / "reactions.yaml")
    code, out, err = run(capsys, "explain", "--json", "--config", "reactions.yaml", MODEL_REGISTERED)
    assert "mlreactor: rules: reactions.yaml (--config)" in err
    assert json.loads(out.splitlines()[0])["rules_file"] == "reactions.yaml"


def test_every_command_that_loads_rules_names_the_file_in_its_json(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = str(ROOT / "reactions.yaml")
    for argv in (["replay", "--config", config, "--json", "--dry-run", "--state", str(tmp_path), MODEL_REGISTERED],
                 ["simulate", "--config", config, "--json"],
                 ["explain", "--config", config, "--json", MODEL_REGISTERED],
                 ["rules", "check", "--config", config, "--json"],
                 ["rules", "test", "--config", config, "--json"]):
        code, out, err = run(capsys, *argv)
        assert code == 0, (argv, err)
        assert f"mlreactor: rules: {config} (--config)" in err
        assert {json.loads(line)["rules_file"] for line in out.splitlines()} == {config}, argv


def test_without_anything_the_bundled_example_is_loaded_and_named(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLREACTOR_RULES_PATH", raising=False)
    code, _, err = run(capsys, "explain", MODEL_REGISTERED)
    assert code == 0 and f"mlreactor: rules: {ROOT / 'reactions.yaml'} (bundled example)" in err


def test_a_missing_rules_file_is_an_operational_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "rules", "check", str(tmp_path / "absent.yaml"))
    assert code == 2
    assert f"mlreactor: error: {tmp_path / 'absent.yaml'}: 1 error(s)" in err and "No such file" in err


def test_rules_check_json_lists_every_finding_with_its_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "reactions.yaml").write_text(BROKEN)
    code, out, _ = run(capsys, "rules", "check", "--json", str(tmp_path / "reactions.yaml"))
    report = json.loads(out)
    assert code == 1 and report["ok"] is False and report["errors"] == 1
    (finding,) = report["findings"]
    assert (finding["rule"], finding["field"], finding["line"]) == ("r", "do[0].tag_model.set.a", 5)
    assert "did you mean 'model.id'?" in finding["message"]


def test_rules_check_json_gives_load_errors_their_line_too(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "reactions.yaml").write_text(BROKEN.replace("on: ModelRegistered", "on: ModelRegisterd"))
    code, out, _ = run(capsys, "rules", "check", "--json", str(tmp_path / "reactions.yaml"))
    (finding,) = json.loads(out)["findings"]
    assert code == 1 and (finding["line"], finding["column"]) == (4, 5)
    assert finding["message"] == "rule 'r': on: unknown event kind 'ModelRegisterd' — did you mean 'ModelRegistered'?"


def test_explain_expect_exits_1_when_the_rule_would_not_fire(capsys: pytest.CaptureFixture[str]) -> None:
    config = str(ROOT / "reactions.yaml")
    assert run(capsys, "explain", "--config", config, "--expect", "test-new-model", MODEL_REGISTERED)[0] == 0
    code, _, err = run(capsys, "explain", "--config", config, "--expect", "retrain-on-drift", MODEL_REGISTERED)
    assert code == 1
    assert ("expected rule 'retrain-on-drift' to fire; it would not: on: event is ModelRegistered, rule wants "
            "DatasetDriftDetected, ModelMonitorSignal") in err
    code, _, err = run(capsys, "explain", "--config", config, "--expect", "retrain-on-drif", MODEL_REGISTERED)
    assert code == 2 and "did you mean 'retrain-on-drift'?" in err


def test_the_shipped_case_folder_passes() -> None:
    """``make test`` runs this: the shipped reactions.yaml against its own cases, as a CI job would."""
    result = subprocess.run([sys.executable, "-m", "shared", "rules", "test"], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    cases = len(list((ROOT / "reactions.tests").glob("*.yaml")))
    assert f"{cases} case(s): {cases} passed, 0 failed" in result.stdout


FAILING_CASE = """description: expects the wrong monitor and a rule that does not fire
event: drift.json
expect:
  outcome: acted
  rules:
    test-new-model: fired
  actions:
    - rule: retrain-on-drift
      kind: run_pipeline
      params: {inputs: {monitor: someOtherMonitor}}
"""


def test_a_case_that_fails_shows_the_diff_and_exits_1(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "drift.json").write_text((EVENTS / "eventgrid" / "dataset_drift_detected.json").read_text())
    (tmp_path / "wrong.yaml").write_text(FAILING_CASE)
    code, out, _ = run(capsys, "rules", "test", "--config", str(ROOT / "reactions.yaml"), str(tmp_path))
    assert code == 1
    assert out.splitlines()[:9] == [
        "FAIL wrong — expects the wrong monitor and a rule that does not fire",
        f"  ({tmp_path / 'wrong.yaml'})",
        "  rules.test-new-model:",
        "    - expected: fired",
        "    + actual:   skipped (on: event is DatasetDriftDetected, rule wants ModelRegistered)",
        "  actions[0] retrain-on-drift/run_pipeline params.inputs.monitor:",
        "    - expected: someOtherMonitor",
        "    + actual:   myDriftMonitor",
        "",
    ]
    assert out.splitlines()[-1].startswith("1 case(s): 0 passed, 1 failed")
    code, out, _ = run(capsys, "rules", "test", "--json", "--config", str(ROOT / "reactions.yaml"), str(tmp_path))
    (result,) = [json.loads(line) for line in out.splitlines()]
    assert code == 1 and result["passed"] is False
    assert [m["where"] for m in result["mismatches"]] == [
        "rules.test-new-model", "actions[0] retrain-on-drift/run_pipeline params.inputs.monitor"]


def test_a_broken_case_file_fails_with_its_reason(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("event: x.json\nexpect: {outcome: acted, outcme: x}\n")
    code, out, _ = run(capsys, "rules", "test", "--config", str(ROOT / "reactions.yaml"), str(tmp_path))
    assert code == 1 and "FAIL bad" in out and "outcme" in out


def test_an_empty_case_folder_is_an_operational_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "rules", "test", "--config", str(ROOT / "reactions.yaml"), str(tmp_path))
    assert code == 2 and "no case files" in err
