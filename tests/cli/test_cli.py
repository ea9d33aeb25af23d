"""``mlreactor`` as a user runs it: readable by default, JSON Lines for machines, honest exit codes."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from shared.ops.cli import SUBCOMMANDS, main
from shared.ops.doctor import settings_problems
from shared.settings import Settings
from tests.conftest import EVENTS, ROOT, SAMPLES, WORKSPACE, delivery
from tests.fakes.webhook_receiver import WebhookReceiver

SAMPLE_FILES = [str(EVENTS / "eventgrid" / f"{n}.json") for n in SAMPLES]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def rows(text: str) -> list[list[str]]:
    """A piped table: one tab-separated row per line, the header first."""
    return [line.split("\t") for line in text.splitlines() if "\t" in line]


def cli(*argv: str, env: dict[str, str] | None = None, **kw: object) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run([sys.executable, "-m", "shared", *argv], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env={**os.environ, **(env or {})}, **kw)  # type: ignore[call-overload]


# replay -------------------------------------------------------------------------------------------------------
def test_replay_prints_full_rows_when_piped_and_says_it_is_a_dry_run(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = run(capsys, "replay", "--state", str(tmp_path), *SAMPLE_FILES)
    assert code == 0
    assert "dry-run: actions are recorded, not sent; give --live to act" in err
    table = rows(out)
    assert table[0] == ["EVENT", "TYPE", "OUTCOME", "REASON", "ACTIONS"]
    ids = {str(e["id"]) for n in SAMPLES for e in delivery(n)}
    assert {row[0] for row in table[1:]} == ids, "every event id in full, never cut"
    assert "6 event(s): 5 acted, 1 ignored" in out


def test_replay_json_has_one_object_per_event_with_structured_details(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = run(capsys, "replay", "--json", "--state", str(tmp_path), *SAMPLE_FILES)
    lines = json_lines(out)
    assert code == 0 and len(lines) == len(SAMPLE_FILES)
    assert "6 event(s): 5 acted, 1 ignored" in err, "the summary goes to stderr: stdout stays JSON Lines"
    for line in lines:
        assert {"event_id", "event_type", "subject", "outcome", "reason", "reactions", "actions"} <= set(line)
    registered = next(line for line in lines if str(line["event_type"]).endswith(".ModelRegistered"))
    pipeline = next(a for a in registered["actions"] if a["kind"] == "run_pipeline")  # type: ignore[union-attr]
    assert pipeline["data"]["dry_run"] is True
    assert pipeline["data"]["params"]["inputs"] == {"model": "azureml:sklearn_regression_model:20"}, (
        "the rendered parameters as JSON, not a Python repr cut at 300 characters"
    )


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


def test_replay_strict_exits_1_when_an_event_is_quarantined(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("<html>oops</html>")
    assert run(capsys, "replay", "--state", str(tmp_path), str(bad))[0] == 0
    bad.write_text("<html>oops, again</html>")
    code, out, _ = run(capsys, "replay", "--strict", "--state", str(tmp_path), str(bad), *SAMPLE_FILES[:1])
    assert code == 1 and "1 quarantined" in out


def test_replay_continues_past_an_unreadable_file_and_ends_with_a_summary_and_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    missing = str(tmp_path / "missing.json")
    code, out, err = run(capsys, "replay", "--json", "--state", str(tmp_path / "s"), SAMPLE_FILES[0], missing,
                         SAMPLE_FILES[1])
    assert code == 2
    assert len(json_lines(out)) == 2, "the files before and after the missing one were replayed"
    assert f"cannot read {missing}: No such file or directory" in err
    assert f"2 event(s): 2 acted; 1 file(s) unreadable: {missing}" in err


# errors and exit codes ----------------------------------------------------------------------------------------
def test_operational_errors_exit_2_with_a_clear_message(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    code, _, err = run(capsys, "replay", "--state", str(blocker / "sub"), *SAMPLE_FILES[:1])
    assert code == 2 and "cannot open the SQLite ledger" in err
    code, _, err = run(capsys, "replay", "--config", str(tmp_path / "nope.yaml"), *SAMPLE_FILES[:1])
    assert code == 2 and "nope.yaml" in err
    code, _, err = run(capsys, "chain", "no-such-chain", "--state", str(tmp_path))
    assert code == 2 and "no audit records for chain 'no-such-chain'" in err


def test_bad_settings_are_one_line_each_naming_the_environment_variable_and_what_it_accepts() -> None:
    result = cli("audit", env={"MLREACTOR_LEDGER": "postgres", "MLREACTOR_NOTIFY_LIVE": "perhaps",
                               "MLREACTOR_LEASE_SECONDS": "-5", "MLREACTOR_DEVOPS_PAT": ""})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert "mlreactor: error: MLREACTOR_LEDGER='postgres': accepted values are 'sqlite' or 'tables'" in lines
    assert "mlreactor: error: MLREACTOR_NOTIFY_LIVE='perhaps': expected true or false" in lines
    assert "mlreactor: error: MLREACTOR_LEASE_SECONDS='-5': Input should be greater than 0" in lines
    assert len(lines) == 3 and "Traceback" not in result.stderr and "validation error" not in result.stderr


def test_a_bad_secret_setting_is_named_without_its_value() -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(devops_pat=123456789, dry_run="sometimes")  # type: ignore[arg-type]
    assert settings_problems(caught.value) == [
        "MLREACTOR_DRY_RUN='sometimes': expected true or false",
        "MLREACTOR_DEVOPS_PAT: Input should be a valid string",
    ]


def test_a_closed_pipe_exits_quietly(tmp_path: Path) -> None:
    files = SAMPLE_FILES * 40
    process = subprocess.Popen([sys.executable, "-m", "shared", "replay", "--json", "--state", str(tmp_path), *files],
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stderr is not None
    process.stdout.readline()
    process.stdout.close()  # `| head -1`
    err = process.stderr.read()
    assert process.wait(timeout=60) == 141
    assert "Broken pipe" not in err and "Traceback" not in err and "Exception ignored" not in err


def test_version_and_an_example_in_every_subcommands_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.startswith("mlreactor 0.")
    commands = [["replay"], ["explain"], ["rules", "check"], ["rules", "test"], ["audit"], ["chains"], ["chain"],
                ["quarantine", "list"], ["deadletter", "redrive"], ["doctor"], ["gates", "check"], ["simulate"]]
    assert len(SUBCOMMANDS) == len({c[0] for c in commands})
    for command in commands:
        with pytest.raises(SystemExit) as done:
            main([*command, "--help"])
        out = capsys.readouterr().out
        assert done.value.code == 0 and "example:\n  mlreactor " + command[0] in out, command


# live only when asked -----------------------------------------------------------------------------------------
@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    server = WebhookReceiver().start()
    yield server
    server.stop()


def live_env(receiver: WebhookReceiver) -> dict[str, str]:
    """Live settings pointing every adapter that can go live at one loopback server that records requests."""
    return {
        "MLREACTOR_NOTIFY_LIVE": "true", "MLREACTOR_ALLOW_HTTP_WEBHOOKS": "true",
        "MLREACTOR_TEAMS_OPS_URL": receiver.url("/teams"), "MLREACTOR_SLACK_OPS_URL": receiver.url("/slack"),
        "MLREACTOR_DEVOPS_ORGANIZATION_URL": receiver.url("/devops"), "MLREACTOR_DEVOPS_AUTH": "pat",
        "MLREACTOR_DEVOPS_PAT": "pat-not-used", "MLREACTOR_EVENTGRID_TOPIC_ENDPOINT": receiver.url("/topic"),
        "MLREACTOR_EVENTGRID_TOPIC_KEY": "key-not-used",
    }


def test_replay_without_live_sends_nothing_whatever_the_environment_holds(
    receiver: WebhookReceiver, tmp_path: Path
) -> None:
    result = cli("replay", "--json", "--state", str(tmp_path), *SAMPLE_FILES, env=live_env(receiver))
    assert result.returncode == 0, result.stderr
    assert receiver.requests == [], "nothing reached the network"
    assert "live settings present but not used: MLREACTOR_DEVOPS_ORGANIZATION_URL, " \
           "MLREACTOR_EVENTGRID_TOPIC_ENDPOINT, MLREACTOR_NOTIFY_LIVE" in result.stderr
    failed = [line for line in json_lines(result.stdout) if line["reactions"] == ["notify-failed-runs"]]
    assert failed[0]["outcome"] == "acted"
    assert failed[0]["actions"][0]["detail"].startswith("dry-run: would notify ops-teams, ops-slack")  # type: ignore[index]


def test_replay_with_live_says_which_adapters_are_live_and_sends(receiver: WebhookReceiver, tmp_path: Path) -> None:
    failed_run = str(EVENTS / "eventgrid" / "run_status_changed_failed.json")
    result = cli("replay", "--live", "--json", "--state", str(tmp_path), failed_run, env=live_env(receiver))
    assert result.returncode == 0, result.stderr
    assert "mlreactor: --live: live: queue_release, notify, publish_event; dry-run: run_pipeline, tag_model, " \
           "tag_run, quality_gate" in result.stderr
    assert sorted(r.path for r in receiver.requests) == ["/slack", "/teams"]


def test_redrive_without_live_sends_nothing_whatever_the_environment_holds(
    receiver: WebhookReceiver, tmp_path: Path
) -> None:
    failed_run = str(EVENTS / "eventgrid" / "run_status_changed_failed.json")
    rules = tmp_path / "rules.yaml"
    rules.write_text((ROOT / "reactions.yaml").read_text().replace(
        "message: run_failed", 'message: run_failed\n          text: "{{ run.nope }}"'))
    quarantined = cli("replay", "--json", "--config", str(rules), "--state", str(tmp_path), failed_run)
    assert json_lines(quarantined.stdout)[0]["outcome"] == "quarantined", quarantined.stderr

    result = cli("deadletter", "redrive", "--quarantined", "--json", "--state", str(tmp_path), env=live_env(receiver))
    assert result.returncode == 0, result.stderr
    assert [r["outcome"] for r in json_lines(result.stdout)] == ["planned"]
    assert receiver.requests == [], "nothing reached the network"
    result = cli("deadletter", "redrive", "--quarantined", "--live", "--json", "--state", str(tmp_path),
                 env=live_env(receiver))
    assert [r["outcome"] for r in json_lines(result.stdout)] == ["acted"], result.stderr
    assert sorted(r.path for r in receiver.requests) == ["/slack", "/teams"], "with --live, sent once fixed"


def test_redrive_without_live_changes_nothing(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    shipped = (ROOT / "reactions.yaml").read_text()
    rules.write_text(shipped.replace('display_name: "offline test of {{ model.id }}"',
                                     'display_name: "offline test of {{ model.nope }}"'))
    registered = str(EVENTS / "eventgrid" / "model_registered.json")
    code, out, _ = run(capsys, "replay", "--config", str(rules), "--state", str(tmp_path), "--json", registered)
    assert json_lines(out)[0]["outcome"] == "quarantined"
    _, listed, _ = run(capsys, "quarantine", "list", "--state", str(tmp_path))
    event_id = delivery("model_registered")[0]["id"]
    assert [row[1] for row in rows(listed)[1:]] == [event_id]

    code, out, err = run(capsys, "deadletter", "redrive", "--quarantined", "--state", str(tmp_path), "--json")
    assert code == 0 and [r["outcome"] for r in json_lines(out)] == ["planned"]
    assert "nothing was redriven or changed; give --live" in err
    assert [row[1] for row in rows(run(capsys, "quarantine", "list", "--state", str(tmp_path))[1])[1:]] == [event_id]

    code, out, _ = run(capsys, "deadletter", "redrive", "--quarantined", "--live", "--state", str(tmp_path), "--json")
    assert [r["outcome"] for r in json_lines(out)] == ["acted"], "the fixed rules file (shipped) is used"
    _, listed, err = run(capsys, "quarantine", "list", "--state", str(tmp_path))
    assert rows(listed)[1:] == [] and "(nothing quarantined)" in err
    _, listed, _ = run(capsys, "quarantine", "list", "--all", "--state", str(tmp_path), "--json")
    assert [r["event_id"] for r in json_lines(listed)] == [event_id]


def test_replay_without_live_refuses_the_shared_tables_ledger(capsys: pytest.CaptureFixture[str],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLREACTOR_LEDGER", "tables")
    monkeypatch.setenv("MLREACTOR_STORAGE_ACCOUNT_URL", "https://nowhere.table.core.windows.net")
    code, _, err = run(capsys, "replay", *SAMPLE_FILES[:1])
    assert code == 2 and "would record dry-run results in the shared Tables ledger" in err


# explain and rules --------------------------------------------------------------------------------------------
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


def test_the_installed_command_and_python_dash_m_work() -> None:
    for argv in (["mlreactor"], [sys.executable, "-m", "shared"]):
        exe = Path(sys.executable).parent / "mlreactor" if argv == ["mlreactor"] else None
        command = [str(exe)] if exe else argv
        result = subprocess.run([*command, "rules", "check"], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert "OK" in result.stdout


# audit, chains, chain -----------------------------------------------------------------------------------------
def test_audit_lists_what_happened_newest_first_with_full_ids_and_the_correlation(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    run(capsys, "replay", "--state", str(tmp_path), *SAMPLE_FILES)
    event_id = delivery("model_registered")[0]["id"]
    code, out, _ = run(capsys, "audit", "--state", str(tmp_path), "--event", event_id, "--json")
    (entry,) = json_lines(out)
    assert code == 0 and entry["outcome"] == "acted" and entry["correlation_id"] == event_id
    _, out, _ = run(capsys, "audit", "--state", str(tmp_path), "--since", "1h")
    table = rows(out)
    assert table[0] == ["AT (UTC)", "EVENT", "TYPE", "OUTCOME", "CORRELATION", "REASON", "ACTIONS"]
    assert len(table) == 1 + len(SAMPLE_FILES)
    assert [event_id, event_id] in [row[1:5:3] for row in table]
    code, _, err = run(capsys, "audit", "--state", str(tmp_path), "--since", "soon")
    assert code == 2 and "--since: 'soon' is not a duration" in err


def test_audit_filters_by_outcome_rule_and_type(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    run(capsys, "replay", "--state", str(tmp_path), *SAMPLE_FILES)

    def types(*filters: str) -> list[str]:
        _, out, _ = run(capsys, "audit", "--state", str(tmp_path), *filters)
        return sorted(row[2] for row in rows(out)[1:])

    assert types("--outcome", "ignored") == ["RunCompleted"]
    assert types("--rule", "retrain-on-drift") == ["DatasetDriftDetected", "RunStatusChanged"]
    assert types("--type", "ModelRegistered") == ["ModelRegistered"]
    assert types("--type", "Microsoft.MachineLearningServices.ModelRegistered") == ["ModelRegistered"]
    assert types("--type", "RunStatusChanged", "--outcome", "acted", "--rule", "notify-failed-runs") == [
        "RunStatusChanged"]
    assert types("--outcome", "quarantined") == []


def test_simulate_keeps_its_ledger_with_state_so_chain_chains_and_audit_work(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, _ = run(capsys, "simulate", "--state", str(tmp_path))
    assert code == 0
    assert f"mlreactor chain sim-0001 --state {tmp_path}" in out
    assert out.rstrip().splitlines()[-1].startswith("== verdict: deployed — deployed as champion: credit-fraud:2")

    code, out, _ = run(capsys, "chain", "sim-0001", "--state", str(tmp_path))
    assert code == 0 and out.startswith("chain sim-0001: deployed as champion: credit-fraud:2")
    steps = [line.split()[2] for line in out.splitlines() if line[:4].isdigit()]
    assert steps[0] == "RunStatusChanged" and steps[-1] == "ReleaseDeployed", "the release target says so"
    assert "(release #100: https://dev.azure.com/contoso/mlops/_build/results?buildId=100)" in out

    failed_run = str(EVENTS / "eventgrid" / "run_status_changed_failed.json")
    run(capsys, "replay", "--state", str(tmp_path), failed_run)  # a lone failed run: it only notifies
    _, out, _ = run(capsys, "chains", "--state", str(tmp_path))
    (chain,) = rows(out)[1:]
    assert chain[1:5] == ["sim-0001", "deployed", "ReleaseDeployed", "7"]
    _, out, _ = run(capsys, "chains", "--all", "--state", str(tmp_path))
    assert {row[1] for row in rows(out)[1:]} == {delivery("run_status_changed_failed")[0]["id"], "sim-0001"}
    _, out, _ = run(capsys, "chains", "--state", str(tmp_path), "--json")
    (found,) = json_lines(out)
    assert found["verdict"]["ending"] == "deployed" and found["models"] == ["credit-fraud:2"]  # type: ignore[index]

    _, out, _ = run(capsys, "audit", "--state", str(tmp_path), "--correlation", "sim-0001", "--json")
    assert len(json_lines(out)) == 7

    code, _, err = run(capsys, "simulate", "--state", str(tmp_path))
    assert code == 2 and "already holds a simulated chain" in err


def test_chain_html_writes_the_page_the_timeline_endpoint_serves(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from shared.ledger.sqlite import SqliteLedger
    from shared.ops.views import timeline_html

    run(capsys, "simulate", "--fail-gate", "--state", str(tmp_path))
    page = tmp_path / "chain.html"
    code, _, _ = run(capsys, "chain", "sim-0001", "--state", str(tmp_path), "--html", str(page))
    ledger = SqliteLedger(tmp_path / "ledger.sqlite3")
    try:
        served = timeline_html("sim-0001", ledger.audit(correlation_id="sim-0001", limit=1000))
    finally:
        ledger.close()
    written = page.read_text()
    assert code == 0
    assert written.split("generated")[0] == served.split("generated")[0]
    assert "rejected by the gate: credit-fraud:2" in written


# simulate -----------------------------------------------------------------------------------------------------
def test_simulate_ends_with_the_verdict_and_exits_0_when_the_chain_ends_as_expected(
    capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "simulate")
    assert code == 0
    assert "== the chain's timeline (mlreactor chain sim-0001 --state DIR)" in out
    assert "queue_release: done — release 100 queued, awaiting approval in environment production" in out
    assert "release 100: approved and deployed (environment production)" in out
    assert "give --state DIR to keep it" in out
    code, out, _ = run(capsys, "simulate", "--fail-gate", "--json")
    assert code == 0
    releases = [a for line in json_lines(out)[:-1] for a in line["actions"] if a["kind"] == "queue_release"]  # type: ignore[union-attr]
    assert [(a["status"], a["detail"]) for a in releases] == [("not run", "if gate.passed: false")]
    assert json_lines(out)[-1] | {"verdict": None, "rules_file": None} == {
        "verdict": None, "expected": "rejected-by-gate", "reached": True, "rules_file": None}
    code, out, _ = run(capsys, "simulate", "--fail-run", "retrain")
    assert code == 0 and "chain_failed" in out and "== verdict: failed — failed at step RunStatusChanged" in out
    code, out, _ = run(capsys, "simulate", "--twice", "--shuffle", "--faults", "0.2")
    assert code == 0 and out.count("release 100: approved") == 1 and "duplicate" in out


@pytest.mark.parametrize(("option", "ending"), [("--reject", "rejected-by-reviewer"),
                                               ("--expire-approval", "approval-expired"),
                                               ("--lose-hooks", "deployed"), ("--ungated", "failed")])
def test_simulate_ends_each_release_variant_with_its_verdict(
    capsys: pytest.CaptureFixture[str], option: str, ending: str
) -> None:
    code, out, _ = run(capsys, "simulate", option)
    assert out.rstrip().splitlines()[-1].startswith(f"== verdict: {ending} — ")
    assert code == 0 and out.rstrip().endswith("(as expected)")


def test_simulate_exits_1_when_the_chain_does_not_reach_the_expected_end(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    shipped = (ROOT / "reactions.yaml").read_text()
    rules = tmp_path / "no-promotion.yaml"
    rules.write_text(shipped.split("  # 5. model deployed")[0])
    code, out, _ = run(capsys, "simulate", "--config", str(rules))
    assert code == 1
    assert out.rstrip().splitlines()[-1].startswith("== verdict: awaiting-approval — awaiting approval since ")
    assert "NOT the expected end (deployed)" in out


@pytest.mark.parametrize("rate", ["2", "-1", "1.5", "lots"])
def test_simulate_refuses_a_fault_rate_outside_0_to_1(capsys: pytest.CaptureFixture[str], rate: str) -> None:
    with pytest.raises(SystemExit) as done:
        main(["simulate", "--faults", rate])
    assert done.value.code == 2 and "--faults" in capsys.readouterr().err


# doctor -------------------------------------------------------------------------------------------------------
def findings(out: str) -> dict[str, list[tuple[str, str]]]:
    by_check: dict[str, list[tuple[str, str]]] = {}
    for line in json_lines(out):
        by_check.setdefault(str(line["check"]), []).append((str(line["status"]), str(line["detail"])))
    return by_check


def test_doctor_shows_the_effective_configuration_and_exits_0_when_nothing_would_fail(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, _ = run(capsys, "doctor", "--state", str(tmp_path), "--json")
    found = findings(out)
    assert code == 0
    assert ("info", f"MLREACTOR_STATE_DIR = {tmp_path}") in found["setting"]
    assert ("info", "MLREACTOR_LEDGER = sqlite") in found["setting"]
    assert ("info", "MLREACTOR_DEVOPS_PAT = unset (default)") in found["setting"]
    assert found["rules"] == [("ok", f"{ROOT / 'reactions.yaml'}: 12 rule(s), 1 allowed workspace(s), 2 channel(s)")]
    assert found["ledger"] == [("ok", f"sqlite ({tmp_path}) answers")]
    assert ("info", "notify: dry-run") in found["adapter"]
    assert found["release gates"] == [("info", "not checked: queue_release is dry-run")]
    assert found["channel"][0][0] == "warn" and "MLREACTOR_TEAMS_OPS_URL not set" in found["channel"][0][1]


def test_doctor_exits_1_for_missing_channel_settings_unresolved_key_vault_references_and_bad_settings(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLREACTOR_NOTIFY_LIVE", "true")
    monkeypatch.setenv("MLREACTOR_SLACK_OPS_URL", "https://hooks.slack.com/services/T/B/x")
    reference = "@Microsoft.KeyVault(SecretUri=https://kv-mlops.vault.azure.net/secrets/devops-pat/)"
    monkeypatch.setenv("MLREACTOR_DEVOPS_PAT", reference)
    code, out, err = run(capsys, "doctor", "--state", str(tmp_path), "--json")
    found = findings(out)
    assert code == 1 and "problem(s) would make the app fail" in err
    assert ("info", "MLREACTOR_DEVOPS_PAT = unset (default)") in found["setting"], "an unresolved reference is unset"
    assert ("fail", "ops-teams (teams): MLREACTOR_TEAMS_OPS_URL not set — every notification to it would fail") \
        in found["channel"]
    assert ("ok", "ops-slack (slack): its settings are set") in found["channel"]
    assert found["key vault"] == [("fail", "MLREACTOR_DEVOPS_PAT is an unresolved Key Vault reference and is not used: "
                                           "check that the secret exists and the app's identity may read it "
                                           "('Key Vault Secrets User')")]
    assert "kv-mlops" not in out, "a reference is a secret's address: not shown"

    monkeypatch.setenv("MLREACTOR_LEDGER", "postgres")
    code, out, _ = run(capsys, "doctor", "--json")
    assert code == 1
    assert findings(out) == {"setting": [("fail", "MLREACTOR_LEDGER='postgres': accepted values are 'sqlite' or "
                                                  "'tables'")]}


def test_doctor_compares_the_subscribed_workspaces_with_the_allowed_ones(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = WORKSPACE.replace("mlw-prod", "mlw-dev")
    rules = tmp_path / "rules.yaml"
    rules.write_text((ROOT / "reactions.yaml").read_text().replace(
        "allowed_workspaces: {from_setting: MLREACTOR_SUBSCRIBED_WORKSPACES}", f"allowed_workspaces: [{WORKSPACE}]"))
    monkeypatch.setenv("MLREACTOR_SUBSCRIBED_WORKSPACES", other)
    code, out, _ = run(capsys, "doctor", "--config", str(rules), "--state", str(tmp_path), "--json")
    assert code == 1
    assert findings(out)["workspaces"] == [
        ("fail", f"{other} is subscribed but not in allowed_workspaces: the engine refuses to start"),
        ("warn", f"{WORKSPACE} is allowed but not in MLREACTOR_SUBSCRIBED_WORKSPACES: no events from it will arrive"),
    ]
