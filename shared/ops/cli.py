"""``mlreactor``: replay event files through the engine, explain rules, check them, read the audit trail.

Readable tables by default, ``--json`` (JSON Lines) for machines. Exit status: 0 when the command did its job
(every replayed event got an outcome), 1 when ``rules check`` finds errors, ``rules test`` a failing case,
``explain --expect`` a rule that would not fire or ``gates check`` a release target that no person gates, 2 for
operational errors (rules file invalid or missing, ledger cannot be opened) with a message on stderr. The rules
commands live in ``rules_cli.py``.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from shared.adapters import describe
from shared.clock import SystemClock, parse_duration
from shared.engine import Engine, Plan
from shared.errors import EventParseError, MlreactorError, RulesError
from shared.events import ParseFailure, parse_delivery
from shared.ledger import open_ledger
from shared.ledger.port import AuditEntry
from shared.ledger.sqlite import SqliteLedger
from shared.ops import rules_cli
from shared.ops.gates import check_release_gates
from shared.ops.redrive import DeadLettered, from_blobs, redrive, transient
from shared.ops.simulate import Options, simulate
from shared.outcomes import EventOutcome
from shared.reactions import Rule, evaluate, load_rules, suggest, throttle_key
from shared.runtime import build_engine
from shared.settings import Settings
from shared.storage import blob_container


class CliError(Exception):
    """An operational error: printed without a traceback, exit status 2."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    # Warnings (a quarantined payload, a retried call) go to stderr; stdout stays clean for --json.
    logging.basicConfig(level=logging.WARNING, format="mlreactor: %(levelname)s: %(message)s", stream=sys.stderr)
    try:
        return int(args.run(args))
    except (CliError, RulesError, OSError, MlreactorError) as exc:
        print(f"mlreactor: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mlreactor: interrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlreactor", description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(p: argparse.ArgumentParser, *, state: bool = True) -> None:
        p.add_argument("--config", type=Path, help="rules file (default: MLREACTOR_RULES_PATH or reactions.yaml)")
        if state:
            p.add_argument("--state", type=Path, help="folder of the SQLite ledger (default: .mlreactor/)")

    replay = sub.add_parser("replay", help="run event deliveries through the engine, exactly as the function does")
    common(replay)
    replay.add_argument("paths", nargs="+", metavar="PATH", help="a file holding one delivery, or - for stdin")
    replay.add_argument("--dry-run", action="store_true", help="record actions instead of sending them")
    replay.add_argument("--json", action="store_true", help="JSON Lines on stdout, one object per event")
    replay.set_defaults(run=cmd_replay)

    explain = sub.add_parser("explain", help="for each rule: matched, or the first criterion that failed")
    common(explain, state=False)
    explain.add_argument("path", metavar="EVENT_FILE")
    explain.add_argument("--json", action="store_true")
    explain.add_argument("--expect", metavar="RULE", help="exit 1 unless RULE would fire for the event(s)")
    explain.set_defaults(run=cmd_explain)

    rules = sub.add_parser("rules", help="work with the rules file")
    rules_cli.register(rules.add_subparsers(dest="rules_command", required=True, metavar="SUBCOMMAND"))

    audit = sub.add_parser("audit", help="what happened, newest first")
    common(audit)
    audit.add_argument("--event", metavar="ID", help="only this event id")
    audit.add_argument("--correlation", metavar="ID", help="only this chain")
    audit.add_argument("--since", metavar="DURATION", help="only the last DURATION (e.g. 30m, 6h, 7d)")
    audit.add_argument("--limit", type=int, default=200)
    audit.add_argument("--json", action="store_true")
    audit.set_defaults(run=cmd_audit, loads_rules=False)

    deadletter = sub.add_parser("deadletter", help="dead-lettered and quarantined events")
    dl_sub = deadletter.add_subparsers(dest="deadletter_command", required=True, metavar="SUBCOMMAND")
    redrive_p = dl_sub.add_parser("redrive", help="replay dead-lettered (or quarantined) events through the engine")
    common(redrive_p)
    source = redrive_p.add_mutually_exclusive_group(required=True)
    source.add_argument("--container", help="the Event Grid dead-letter blob container")
    source.add_argument("--quarantined", action="store_true", help="mlreactor's own quarantined events")
    redrive_p.add_argument("--since", metavar="DURATION", help="only what was dead-lettered in the last DURATION")
    redrive_p.add_argument("--event-id", metavar="ID", help="only this event")
    redrive_p.add_argument("--dry-run", action="store_true", help="show what would be redriven; change nothing")
    redrive_p.add_argument("--json", action="store_true", help="one JSON object per event")
    redrive_p.set_defaults(run=cmd_redrive)

    gates = sub.add_parser("gates", help="release gates: is every release held by a person?")
    gates_sub = gates.add_subparsers(dest="gates_command", required=True, metavar="SUBCOMMAND")
    gates_check = gates_sub.add_parser(
        "check", help="read every release rule's approvals now (read-only); exit 1 if any target is not gated"
    )
    common(gates_check, state=False)
    gates_check.add_argument("--json", action="store_true", help="one JSON object per release action")
    gates_check.set_defaults(run=cmd_gates_check)

    sim = sub.add_parser("simulate", help="run the retrain → test → release chain against a simulated workspace")
    common(sim)
    sim.add_argument("--fail-gate", action="store_true", help="the candidate's offline test misses the thresholds")
    sim.add_argument("--fail-run", choices=["retrain", "test"], help="that run of the chain fails")
    sim.add_argument("--twice", action="store_true", help="deliver every event twice, as Event Grid may")
    sim.add_argument("--shuffle", action="store_true", help="deliver pending events out of order")
    sim.add_argument("--faults", type=float, default=0.0, metavar="RATE",
                     help="share of simulated Azure calls that fail transiently (e.g. 0.2)")
    sim.add_argument("--seed", type=int, default=7, help="seed of --shuffle and --faults")
    sim.add_argument("--reject", action="store_true", help="the reviewer rejects the release")
    sim.add_argument("--expire-approval", action="store_true",
                     help="nobody approves: a reminder after 48 h, then the approval times out")
    sim.add_argument("--lose-hooks", action="store_true",
                     help="Azure DevOps' service hooks never arrive: the reconciler closes the chain")
    sim.add_argument("--ungated", action="store_true",
                     help="the release environment was never set up (no approval): the release is refused")
    sim.add_argument("--json", action="store_true", help="the outcome of every delivery as JSON Lines")
    sim.set_defaults(run=cmd_simulate)
    return parser


def _settings(args: argparse.Namespace, **overrides: Any) -> Settings:
    values: dict[str, Any] = dict(overrides)
    if getattr(args, "loads_rules", True):
        chosen = rules_cli.resolve(getattr(args, "config", None))
        chosen.announce()
        values["rules_path"] = chosen.path
    if getattr(args, "state", None):
        values["state_dir"] = args.state
    return Settings(**values)


def _read(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return Path(path).read_bytes().decode("utf-8", errors="replace")
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror or exc}") from None


# replay -------------------------------------------------------------------------------------------------------
def cmd_replay(args: argparse.Namespace) -> int:
    settings = _settings(args, **({"dry_run": True} if args.dry_run else {}))
    engine = build_engine(settings)
    modes = describe(engine.adapters)
    if all(mode == "dry-run" for mode in modes.values()):
        why = "--dry-run" if args.dry_run else "no Azure settings"
        print(f"mlreactor: dry-run ({why}): actions are recorded, not sent", file=sys.stderr)
    else:
        print("mlreactor: live adapters: " + ", ".join(f"{k}={v}" for k, v in modes.items()), file=sys.stderr)
    outcomes: list[EventOutcome] = []
    progress = _Progress("replayed", "files", total=len(args.paths))
    try:
        for path in args.paths:
            for outcome in engine.handle_delivery(_read(path)):
                outcomes.append(outcome)
                if args.json:
                    print(json.dumps({**outcome.as_dict(), "rules_file": str(settings.rules_path)}, default=str),
                          flush=True)
            progress.step()
    finally:
        progress.done()
        engine.ledger.close()
    if not args.json:
        _print_outcomes(outcomes, sys.stdout)
    return 0


class _Progress:
    """``replayed 120/500 files`` (or ``redriven 120 events`` when the total is unknown) on a terminal's stderr,
    every ``every`` steps, so a long run shows it is alive."""

    def __init__(self, verb: str, noun: str, *, total: int | None = None, every: int = 1) -> None:
        self.verb, self.noun, self.total, self.every, self.count = verb, noun, total, every, 0
        self.enabled = sys.stderr.isatty() and (total is None or total >= 20)

    def step(self, _: object = None) -> None:
        self.count += 1
        if self.enabled and self.count % self.every == 0:
            of = f"/{self.total}" if self.total is not None else ""
            print(f"\r{self.verb} {self.count}{of} {self.noun}", end="", file=sys.stderr, flush=True)

    def done(self) -> None:
        if self.enabled and self.count >= self.every:
            print(file=sys.stderr)


def _summary(outcomes: Iterable[str]) -> str:
    """``6 event(s): 5 acted, 1 ignored``."""
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome] = counts.get(outcome, 0) + 1
    return f"{sum(counts.values())} event(s): " + (", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "none")


def _print_outcomes(outcomes: list[EventOutcome], out: TextIO) -> None:
    rows = []
    for o in outcomes:
        kind = (o.event_type or "-").removeprefix("Microsoft.MachineLearningServices.")
        actions = ", ".join(f"{a.kind}:{a.status}" for a in o.actions) or "-"
        rows.append([o.event_id or "-", kind, o.outcome.value, o.reason, actions])
    _table(["EVENT", "TYPE", "OUTCOME", "REASON", "ACTIONS"], rows, out)
    print(f"\n{_summary(o.outcome.value for o in outcomes)}", file=out)
    for o in outcomes:
        for a in o.actions:
            print(f"  {o.event_id} {a.rule}/{a.kind} [{a.status}] {a.detail}", file=out)


# explain ------------------------------------------------------------------------------------------------------
def cmd_explain(args: argparse.Namespace) -> int:
    settings = _settings(args)
    rules = load_rules(settings.rules_path)
    names = [rule.name for rule in rules.spec.rules]
    if args.expect and args.expect not in names:
        raise CliError(f"--expect: no rule {args.expect!r} in {settings.rules_path}{suggest(args.expect, names)}")
    fired, why_not = False, ""
    engine = Engine(rules, _NoLedger(), {})
    try:
        items = parse_delivery(_read(args.path))
    except EventParseError as exc:
        raise CliError(f"{args.path}: {exc}") from None
    for item in items:
        if isinstance(item, ParseFailure):
            report: dict[str, Any] = {"event_id": item.event_id, "error": item.reason}
        else:
            plan = engine.plan(item)
            report = {
                "rules_file": str(settings.rules_path),
                "event_id": item.id,
                "event_type": item.event_type,
                "kind": item.kind.value,
                "allowed": rules.allows(item),
                "rules": [
                    {
                        "rule": v.rule.name,
                        "matched": v.matched,
                        "reason": v.reason,
                        "throttle_key": throttle_key(v.rule, item) if v.matched else None,
                        "actions": _explained_actions(v.rule, plan) if v.matched else [],
                    }
                    for v in (evaluate(r, item) for r in rules.spec.rules)
                ],
            }
            expected = next((r for r in report["rules"] if r["rule"] == args.expect), None)
            fired = fired or bool(expected and expected["matched"])
            why_not = why_not or (expected["reason"] if expected and not expected["matched"] else "")
        if args.json:
            print(json.dumps(report, default=str))
        else:
            _print_explanation(report, sys.stdout)
    if args.expect and not fired:
        print(f"mlreactor: expected rule {args.expect!r} to fire; it would not: {why_not or 'no event parsed'}",
              file=sys.stderr)
        return 1
    return 0


def _explained_actions(rule: Rule, plan: Plan) -> list[dict[str, Any]]:
    """A matched rule's actions in order: rendered, or why not yet (they use an earlier action's result)."""
    rendered = {a.index: a for a in plan.actions if a.rule == rule.name}
    errors = {e.key: e for e in plan.errors if e.rule == rule.name}
    ids: list[str] = []
    explained: list[dict[str, Any]] = []
    for index, spec in enumerate(rule.do):
        entry: dict[str, Any] = {"kind": spec.kind.value}
        if spec.params.if_:
            entry["if"] = spec.params.if_
        if index in rendered:
            entry["params"] = rendered[index].params.model_dump(exclude_defaults=True, exclude={"id", "if_"})
        else:
            error = next((e.detail for e in errors.values() if e.detail.startswith(f"do[{index}].")), "")
            uses = [i for i in ids if f"{{{{ {i}." in error]
            if uses:
                entry["deferred"] = f"rendered when the rule runs: uses the result of {', '.join(uses)}"
            else:
                entry["error"] = error
        explained.append(entry)
        if spec.params.id:
            ids.append(spec.params.id)
    return explained


def _print_explanation(report: dict[str, Any], out: TextIO) -> None:
    if "error" in report:
        print(f"event {report['event_id']}: cannot be parsed: {report['error']}", file=out)
        return
    allowed = "allowed" if report["allowed"] else "NOT allowed (would be rejected)"
    print(f"event {report['event_id']} ({report['kind']}), workspace {allowed}", file=out)
    for rule in report["rules"]:
        mark = "MATCH" if rule["matched"] else "skip "
        print(f"  {mark} {rule['rule']}: {rule['reason']}", file=out)
        if rule["throttle_key"]:
            print(f"        throttle key: {rule['throttle_key']}", file=out)
        for action in rule["actions"]:
            body = action.get("error") or action.get("deferred") or json.dumps(
                action["params"], sort_keys=True, default=str
            )
            condition = f" (if {action['if']})" if "if" in action else ""
            print(f"        → {action['kind']}{condition}: {body}", file=out)


class _NoLedger:
    """``explain`` never touches state; any call here would be a bug."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"explain must not use the ledger ({name})")


# audit --------------------------------------------------------------------------------------------------------
def cmd_audit(args: argparse.Namespace) -> int:
    settings = _settings(args)
    since = _since(args.since)
    ledger = open_ledger(settings)
    try:
        entries = ledger.audit(event_id=args.event, correlation_id=args.correlation, since=since, limit=args.limit)
    finally:
        ledger.close()
    if args.json:
        for entry in entries:
            print(json.dumps(entry.as_dict(), default=str))
        return 0
    if args.correlation:
        _print_timeline(list(reversed(entries)), sys.stdout)
        return 0
    rows = [
        [
            e.at.strftime("%Y-%m-%d %H:%M:%S"), e.event_id or "-",
            e.event_type.removeprefix("Microsoft.MachineLearningServices.") or "-", e.outcome, e.reason,
            ", ".join(f"{a.get('kind')}:{a.get('status')}" for a in e.actions) or "-",
        ]
        for e in entries
    ]
    _table(["AT (UTC)", "EVENT", "TYPE", "OUTCOME", "REASON", "ACTIONS"], rows, sys.stdout)
    if not entries:
        print("(no audit records match)")
    return 0


def _print_timeline(entries: list[AuditEntry], out: TextIO) -> None:
    """One chain, oldest first: each step, when, its outcome, and what it did (with links)."""
    if not entries:
        print("(no audit records for this correlation id)", file=out)
        return
    print(f"chain {entries[0].correlation_id}: {len(entries)} step(s)", file=out)
    for e in entries:
        kind = e.event_type.removeprefix("Microsoft.MachineLearningServices.")
        rules = f" [{', '.join(e.reactions)}]" if e.reactions else ""
        print(f"{e.at:%Y-%m-%d %H:%M:%S}  {kind:<18} {e.outcome:<11}{rules}", file=out)
        if e.outcome not in ("acted",):
            print(f"{'':21}{e.reason}", file=out)
        for a in e.actions:
            link = f"  {a['url']}" if a.get("url") else ""
            print(f"{'':21}{a.get('kind')}: {a.get('status')} — {a.get('detail')}{link}", file=out)


# deadletter redrive -------------------------------------------------------------------------------------------
def cmd_redrive(args: argparse.Namespace) -> int:
    settings = _settings(args)
    since = _since(args.since)
    engine = build_engine(settings)
    ledger = engine.ledger
    try:
        if args.quarantined:
            items: Iterable[DeadLettered] = [
                DeadLettered("quarantine", record.raw, record.reason) for record in ledger.quarantined(since)
            ]
        else:
            items = from_blobs(blob_container(settings, args.container), since)
        if args.event_id:
            items = (item for item in items if _event_id(item.raw) == args.event_id)
        progress = _Progress("redriven", "events", every=10)
        results = redrive(engine, items, reopen=args.quarantined, dry_run=args.dry_run, progress=progress.step)
        progress.done()
    finally:
        ledger.close()
    if args.json:
        for result in results:
            print(json.dumps({**result.as_dict(), "rules_file": str(settings.rules_path)}))
        return 0
    _table(["ORIGIN", "EVENT", "DEAD-LETTER REASON", "OUTCOME", "REASON"],
           [[r.origin, r.event_id or "-", r.dead_letter_reason or "-", r.outcome, r.reason] for r in results],
           sys.stdout)
    print(f"\n{_summary(r.outcome for r in results)}")
    again = transient(results)
    if again:
        print(f"{len(again)} failed transiently: redrive again later (done actions are not repeated)")
    return 0


def _event_id(raw: object) -> str | None:
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return None
    return raw.get("id") if isinstance(raw, dict) else None


def _since(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return SystemClock().now() - parse_duration(text)
    except ValueError as exc:
        raise CliError(f"--since: {exc}") from None


# gates check --------------------------------------------------------------------------------------------------
def cmd_gates_check(args: argparse.Namespace) -> int:
    settings = _settings(args)
    results = check_release_gates(settings, load_rules(settings.rules_path))
    if args.json:
        for result in results:
            print(json.dumps(result.as_dict()))
    else:
        _table(["RULE", "TARGET", "ENVIRONMENT", "GATED", "WHY"],
               [[f"{r.rule}[{r.index}]", r.target, r.environment, "yes" if r.gated else "NO", r.why]
                for r in results], sys.stdout)
        if not results:
            print("(no queue_release action in the rules)")
    return 0 if all(r.gated for r in results) else 1


# simulate -----------------------------------------------------------------------------------------------------
def cmd_simulate(args: argparse.Namespace) -> int:
    settings = _settings(args)
    rules = load_rules(settings.rules_path)
    options = Options(fail_gate=args.fail_gate, fail_run=args.fail_run, duplicates=args.twice,
                      shuffle=args.shuffle, seed=args.seed, fault_rate=args.faults, reject=args.reject,
                      expire=args.expire_approval, lose_hooks=args.lose_hooks, ungated=args.ungated)
    with tempfile.TemporaryDirectory(prefix="mlreactor-sim-") as scratch:
        ledger = SqliteLedger((args.state or Path(scratch)) / "ledger.sqlite3")
        try:
            result = simulate(rules, ledger, options)
            timeline = list(reversed(ledger.audit(correlation_id=result.correlation_id, limit=1000)))
        finally:
            ledger.close()
    if args.json:
        for kind, outcome in result.outcomes:
            print(json.dumps({"kind": kind, **outcome.as_dict(), "rules_file": str(settings.rules_path)}, default=str))
        return 0
    out = sys.stdout
    print("== deliveries (every event through the real engine, rules and ledger)", file=out)
    _table(["EVENT", "KIND", "OUTCOME", "REASON"],
           [[o.event_id or "-", kind, o.outcome.value, o.reason] for kind, o in result.outcomes], out)
    print("\n== the chain's timeline (mlreactor audit --correlation " + result.correlation_id + ")", file=out)
    _print_timeline(timeline, out)
    world = result.world
    print("\n== end state", file=out)
    for job in world.jobs.values():
        print(f"job {job.name}: {job.purpose}, {job.status}", file=out)
    for (name, version), tags in sorted(world.models.items()):
        shown = ", ".join(f"{k}={v}" for k, v in sorted(tags.items()) if k.startswith("mlreactor.") and
                          not k.startswith("mlreactor.metric."))
        print(f"model {name}:{version}: {shown}", file=out)
    for check in world.gate_checks:
        print(f"release gate {check.environment} ({check.where}): {check.summary}", file=out)
    for release in world.releases:
        print(f"release {release.id}: {release.status} (environment {release.environment})", file=out)
    for message in world.notifications:
        print(f"Ops told: {message}", file=out)
    for published in world.published:
        print(f"published: {published}", file=out)
    return 0


# output -------------------------------------------------------------------------------------------------------
def _table(headers: list[str], rows: Iterable[list[str]], out: TextIO) -> None:
    """A plain aligned table; the widest column (usually REASON) is cut to fit the terminal."""
    rows = [[str(c).replace("\n", " ") for c in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    limit = shutil.get_terminal_size((160, 24)).columns
    while sum(widths) + 2 * (len(widths) - 1) > limit and max(widths) > 24:
        widest = widths.index(max(widths))
        widths[widest] -= 1

    def fit(text: str, width: int) -> str:
        return text if len(text) <= width else text[: width - 1] + "…"

    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip(), file=out)
    for row in rows:
        print("  ".join(fit(c, w).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip(), file=out)


if __name__ == "__main__":
    raise SystemExit(main())
