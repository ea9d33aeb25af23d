"""``mlreactor simulate`` shows the release gate being verified; ``--ungated`` shows the refusal, the quarantine and
the Ops notice — with the shipped rules, through the real engine and the same judges the adapters use."""

from __future__ import annotations

import json

import pytest

from shared.ops.cli import main


def test_simulate_verifies_the_gate_before_the_release(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate"]) == 0

    out = capsys.readouterr().out
    assert ("release gate production (organization contoso, project mlops, pipeline 42): gated: Approval check by "
            "ML Release Board (1 of 1 required; requesters may not approve their own runs)") in out
    assert "release 100: approved and deployed (environment production)" in out


def test_simulate_ungated_refuses_quarantines_and_tells_ops(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--ungated", "--json"]) == 0
    outcomes = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert main(["simulate", "--ungated"]) == 0
    out = capsys.readouterr().out

    [refused] = [o for o in outcomes if o["outcome"] == "quarantined"]
    assert refused["kind"] == "RunCompleted"
    assert "environment 'production' is not gated by a person" in refused["reason"]
    assert "release 100" not in out, "nothing was queued"
    assert "NOT gated: environment 'production' does not exist" in out
    assert "Ops told: event_quarantined: gate-and-release/queue_release: refused to queue" in out
    assert not [o for o in outcomes if o["kind"] == "ModelDeployed"]
