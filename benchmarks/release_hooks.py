"""Release hooks: what one Azure DevOps service-hook notification costs through the hook endpoint's logic (secret
check, parse, ledger lookup, the engine with the shipped rules, dry-run adapters, SQLite ledger) — beside, in the
same run, the same notifications as Event Grid ModelRegistered deliveries through the engine (the chain's usual
event) and a floor (JSON parse + secret check + signal parse alone).

Each notification is about its own queued release (a run succeeded → ReleaseDeployed → champion tags + notify);
10 % are replays of an earlier one (``duplicate``), as a sender's retries are.

    python benchmarks/release_hooks.py [--hooks 3000]
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shared.adapters import build_adapters  # noqa: E402
from shared.engine import Engine  # noqa: E402
from shared.ledger.port import ReleaseRecord  # noqa: E402
from shared.ledger.sqlite import SqliteLedger  # noqa: E402
from shared.reactions import load_rules  # noqa: E402
from shared.releases import hooks  # noqa: E402
from shared.releases.signals import parse_azure_devops  # noqa: E402
from shared.settings import Settings  # noqa: E402

SECRET = "bench-hook-secret"
HEADERS = {"X-Mlreactor-Hook-Secret": SECRET}
SAMPLE = json.loads((ROOT / "tests" / "events" / "hooks" / "azure_devops" / "run_state_changed.json").read_text())
REGISTERED = json.loads((ROOT / "tests" / "events" / "eventgrid" / "model_registered.json").read_text())[0]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def notifications(count: int, seed: int = 7) -> list[tuple[int, bytes]]:
    rng = random.Random(seed)
    out: list[tuple[int, bytes]] = []
    for i in range(count):
        if out and rng.random() < 0.10:
            out.append(rng.choice(out))
            continue
        body = copy.deepcopy(SAMPLE)
        body["id"] = f"bench-{i}"
        body["resource"]["run"]["id"] = 1000 + i
        out.append((1000 + i, json.dumps(body).encode()))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hooks", type=int, default=3000)
    args = parser.parse_args()
    bodies = notifications(args.hooks)
    settings = Settings.model_validate({"dry_run": True, "release_hook_secret": SECRET})
    rules = load_rules(ROOT / "reactions.yaml")
    workspace = rules.spec.allowed_workspaces[0]
    now = datetime.now(UTC)

    floor: list[float] = []
    for _, body in bodies:
        t0 = time.perf_counter()
        hooks.azure_devops_authorized({k.lower(): v for k, v in HEADERS.items()}, settings.release_hook_secret)
        parse_azure_devops(json.loads(body), "contoso")
        floor.append(time.perf_counter() - t0)

    results: dict[str, tuple[list[float], dict[str, int]]] = {}
    with tempfile.TemporaryDirectory() as state:
        ledger = SqliteLedger(Path(state) / "hooks.sqlite3")
        engine = Engine(rules, ledger, build_adapters(settings, rules, ledger))
        for run_id, _ in bodies:
            ledger.track_release(ReleaseRecord(
                target="azure-devops-pipeline", scope="contoso", release_id=str(run_id), model="credit-fraud",
                version=str(run_id), correlation_id=f"chain-{run_id}", workspace=workspace, queued_at=now,
                project="mlops", definition="42", environment="production"))
        latencies, outcomes = [], {}
        for _, body in bodies:
            t0 = time.perf_counter()
            answer = hooks.azure_devops(engine, settings, HEADERS, body, "contoso", now)
            latencies.append(time.perf_counter() - t0)
            outcomes[answer.body["outcome"]] = outcomes.get(answer.body["outcome"], 0) + 1
        results["hook: ReleaseDeployed via the hook"] = (latencies, outcomes)
        ledger.close()

        ledger = SqliteLedger(Path(state) / "eventgrid.sqlite3")
        engine = Engine(rules, ledger, build_adapters(settings, rules, ledger))
        latencies, outcomes = [], {}
        for run_id, body in bodies:
            data = {k: v for k, v in REGISTERED["data"].items() if k.lower() != "modelversion"}
            event = {**REGISTERED, "id": f"bench-{json.loads(body)['id']}", "data": {**data, "modelVersion": run_id}}
            payload = json.dumps([event])
            t0 = time.perf_counter()
            (outcome,) = engine.handle_delivery(payload)
            latencies.append(time.perf_counter() - t0)
            outcomes[outcome.outcome.value] = outcomes.get(outcome.outcome.value, 0) + 1
        results["baseline: ModelRegistered via EG"] = (latencies, outcomes)
        ledger.close()

    print(f"release hooks: {len(bodies)} notifications (10 % replays), SQLite ledger, dry-run adapters, shipped rules")
    print(f"{'path':<36} {'per s':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}  outcomes")
    print(f"{'floor: secret + parse':<36} {len(floor) / sum(floor):>8.0f} {percentile(floor, 0.5) * 1e3:>8.3f} "
          f"{percentile(floor, 0.99) * 1e3:>8.3f} {max(floor) * 1e3:>8.3f}")
    for name, (values, counts) in results.items():
        print(f"{name:<36} {len(values) / sum(values):>8.0f} {percentile(values, 0.5) * 1e3:>8.3f} "
              f"{percentile(values, 0.99) * 1e3:>8.3f} {max(values) * 1e3:>8.3f}  "
              f"{', '.join(f'{n} {k}' for k, n in sorted(counts.items()))}")
    hook_p50 = percentile(results["hook: ReleaseDeployed via the hook"][0], 0.5)
    base_p50 = percentile(results["baseline: ModelRegistered via EG"][0], 0.5)
    print(f"\nhook / Event Grid event (median): {hook_p50 / base_p50:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
