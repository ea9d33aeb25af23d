"""The embedded SQLite ledger shared by several processes on one machine: every action is done exactly once."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

from tests.conftest import ROOT, SAMPLES, event


def test_four_processes_replaying_the_same_events_in_different_orders_act_once_per_action(tmp_path: Path) -> None:
    files = []
    for i in range(50):
        raw = event(SAMPLES[i % len(SAMPLES)], id=f"mp-{i}")
        path = tmp_path / f"{i}.json"
        path.write_text(json.dumps([raw]))
        files.append(str(path))
    state = tmp_path / "state"
    procs = []
    for seed in range(4):
        order = files[:]
        random.Random(seed).shuffle(order)
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "shared", "replay", "--json", "--state", str(state), *order],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        ))
    lines = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        lines += [json.loads(line) for line in out.splitlines()]

    assert len(lines) == 4 * 50, "every event got an outcome in every process"
    done = Counter(a["key"] for line in lines for a in line["actions"] if a["status"] == "done")
    assert done and set(done.values()) == {1}, "each action done by exactly one process"
    per_event = Counter(line["event_id"] for line in lines if line["outcome"] in {"acted", "ignored"})
    assert set(per_event.values()) == {1}, "each event decided once; the other deliveries were duplicates"
    assert all(line["outcome"] in {"acted", "ignored", "duplicate", "failed"} for line in lines)
