"""``mlreactor`` as a user runs it: readable by default, JSON Lines for machines, honest exit codes."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from shared.ops.cli import main
from tests.conftest import EVENTS, ROOT, SAMPLES, delivery

SAMPLE_FILES = [str(EVENTS / "eventgrid" / f"{n}.json") for n in SAMPLES]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_replay_prints_a_table_and_says_it_is_a_dry_run(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = run(capsys, "replay", "--state", str(tmp_path), *SAMPLE_FILES)
    assert code == 0
    assert "dry-run" in err
    assert out.splitlines()[0].split() == ["EVENT", "TYPE", "OUTCOME", "REASON", "ACTIONS"]
    assert "6 event(s): 5 acted, 1 ignored" in out


def test_replay_json_has_one_object_per_event_with_the_documented_fields(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, _ = run(capsys, "replay", "--json", "--dry-run", "--state", str(tmp_path), *SAMPLE_FILES)
    lines = json_lines(out)
    assert code == 0 and len(lines) == len(SAMPLE_FILES)
    for line in lines:
        assert {"event_id", "event_type", "subject", "outcome", "reason", "reactions", "actions"} <= set(line)
    acted = [line for line in lines if line["outcome"] == "acted"]
    assert all({"kind", "status", "detail"} <= set(a) for line in acted for a in line["actions"])  # type: ignore[union-attr]


def test_replaying_again_reports_duplicates(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    run(capsys, "replay", "--json", "--state", str(tmp_path), *SAMPLE_FILES)
    _, out, _ = run(capsys, "replay", "--json", "--state", str(tmp_path), *SAMPLE_FILES)
    assert {line["outcome"] for line in json_lines(out)} == {"duplicate"}


def test_input_that_is_not_json_is_one_quarantined_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("<html>oops</html>"))
    code, out, _ = run(capsys, "replay", "--json", "--state", str(tmp_path), "-")
    (line,) = json_lines(out)
    assert code == 0
    assert line["outcome"] == "quarantined" and line["event_id"] is None
    assert "not valid JSON" in str(line["reason"])


def test_operational_errors_exit_2_with_a_clear_message(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    code, _, err = run(capsys, "replay", "--state", str(blocker / "sub"), *SAMPLE_FILES[:1])
    assert code == 2 and "cannot open the SQLite ledger" in err
    code, _, err = run(capsys, "replay", "--state", str(tmp_path), str(tmp_path / "missing.json"))
    assert code == 2 and "cannot read" in err and "missing.json" in err
    code, _, err = run(capsys, "replay", "--config", str(tmp_path / "nope.yaml"), *SAMPLE_FILES[:1])
    assert code == 2 and "nope.yaml" in err


def test_explain_says_which_rules_match_and_renders_their_actions(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "explain", str(EVENTS / "eventgrid" / "model_registered.json"))
    assert code == 0
    assert "MATCH test-new-model: all criteria hold" in out
    assert "skip  notify-failed-runs: on: event is ModelRegistered, rule wants RunStatusChanged" in out
    assert '"model": "azureml:sklearn_regression_model:20"' in out


def test_explain_json(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(capsys, "explain", "--json", str(EVENTS / "eventgrid" / "model_monitor_threshold_breached.json"))
    (report,) = json_lines(out)
    rules = {r["rule"]: r for r in report["rules"]}  # type: ignore[union-attr]
    assert rules["retrain-on-drift"]["matched"] is True
    assert rules["retrain-on-drift"]["throttle_key"] == "retrain-on-drift|credit_card_fraud_monitor"


def test_rules_check_ok_and_failing(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = run(capsys, "rules", "check", str(ROOT / "reactions.yaml"))
    assert code == 0 and "OK — 12 rule(s)" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text("allowed_workspaces: [x]\nrules: [{name: Bad Name, on: Nope, do: []}]\n")
    code, _, err = run(capsys, "rules", "check", str(bad))
    assert code == 1
    assert "'x' is not a workspace resource id" in err
    assert "rule 'Bad Name': name:" in err and "unknown event kind 'Nope'" in err


def test_audit_lists_what_happened_newest_first(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    run(capsys, "replay", "--state", str(tmp_path), *SAMPLE_FILES)
    event_id = delivery("model_registered")[0]["id"]
    code, out, _ = run(capsys, "audit", "--state", str(tmp_path), "--event", event_id, "--json")
    (entry,) = json_lines(out)
    assert code == 0 and entry["outcome"] == "acted" and entry["correlation_id"] == event_id
    _, table, _ = run(capsys, "audit", "--state", str(tmp_path), "--since", "1h")
    assert table.splitlines()[0].split()[:3] == ["AT", "(UTC)", "EVENT"]
    assert len(table.splitlines()) == 1 + len(SAMPLE_FILES)
    code, _, err = run(capsys, "audit", "--state", str(tmp_path), "--since", "soon")
    assert code == 2 and "--since" in err


def test_the_installed_command_and_python_dash_m_work() -> None:
    for argv in (["mlreactor"], [sys.executable, "-m", "shared"]):
        exe = Path(sys.executable).parent / "mlreactor" if argv == ["mlreactor"] else None
        command = [str(exe)] if exe else argv
        result = subprocess.run([*command, "rules", "check"], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert "OK" in result.stdout


def test_simulate_prints_the_deliveries_the_timeline_and_the_end_state(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "simulate")
    assert code == 0
    assert "== the chain's timeline (mlreactor audit --correlation sim-0001)" in out
    assert "queue_release: done — release 100 queued, awaiting approval in environment production" in out
    assert "release 100: approved and deployed (environment production)" in out


def test_simulate_options_fail_the_gate_or_a_run_and_deliver_twice(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(capsys, "simulate", "--fail-gate", "--json")
    releases = [a for line in json_lines(out) for a in line["actions"] if a["kind"] == "queue_release"]  # type: ignore[union-attr]
    assert [(a["status"], a["detail"]) for a in releases] == [("not run", "if gate.passed: false")]
    _, out, _ = run(capsys, "simulate", "--fail-run", "retrain")
    assert "chain_failed" in out
    _, out, _ = run(capsys, "simulate", "--twice", "--shuffle", "--faults", "0.2")
    assert out.count("release 100: approved") == 1 and "duplicate" in out


def test_audit_by_correlation_prints_the_chain_as_a_timeline(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    run(capsys, "simulate", "--state", str(tmp_path))
    code, out, _ = run(capsys, "audit", "--state", str(tmp_path), "--correlation", "sim-0001")
    assert code == 0 and out.startswith("chain sim-0001: ")
    steps = [line.split()[2] for line in out.splitlines()[1:] if line[:4].isdigit()]
    assert steps[0] == "RunStatusChanged" and steps[-1] == "ReleaseDeployed"  # the release target says so


def test_explain_lists_a_rules_actions_in_order_with_conditions_and_deferred_steps(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    raw = delivery("run_completed")
    raw[0]["data"]["runTags"] = {"mlreactor.purpose": "offline-test", "mlreactor.model_name": "credit",
                                 "mlreactor.model_version": "2"}
    path = tmp_path / "offline.json"
    path.write_text(json.dumps(raw))
    _, out, _ = run(capsys, "explain", str(path))
    lines = [line.strip() for line in out.splitlines() if line.strip().startswith("→")]
    assert lines[0].startswith("→ quality_gate: {")
    assert lines[1] == "→ tag_model: rendered when the rule runs: uses the result of gate"
    assert lines[2] == "→ queue_release (if gate.passed): rendered when the rule runs: uses the result of gate"
