"""``mlreactor``: replay event files through the engine, explain and check rules, read the audit and the chains.

Readable tables by default, ``--json`` (JSON Lines) for machines. Exit status: 0 when the command did its job,
1 when it found something (``rules check`` errors, ``rules test`` a failing case, ``explain --expect`` a rule that
would not fire, ``gates check`` a release target no person gates, ``replay --strict`` quarantined or failed events,
``doctor`` something that would fail, ``simulate`` not reaching the expected end), 2 for operational errors
(a bad setting, a rules file invalid or missing, a file that cannot be read, a ledger that cannot be opened) with
one line per problem on stderr and no traceback. Stopped by a closed pipe (``| head``) it exits quietly with 141,
as any Unix tool stopped by SIGPIPE.

``replay`` and ``deadletter redrive`` act for real only with ``--live``: without it they run dry, whatever the
environment holds.

The rules commands (``rules check``, ``rules test``) and which rules file every command loads live in
``rules_cli.py``. Each subcommand is one ``add_*`` function that declares its parser (with an example for
``--help``) and the ``cmd_*`` that runs it; ``SUBCOMMANDS`` lists them.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any, TextIO

from pydantic import ValidationError

from shared.adapters import describe
from shared.clock import SystemClock
from shared.engine import Engine, Plan
from shared.errors import EventParseError, MlreactorError, RulesError
from shared.events import ParseFailure, parse_delivery
from shared.jsontext import dumps
from shared.ledger import open_ledger
from shared.ledger.port import AuditEntry, Ledger
from shared.ledger.sqlite import SqliteLedger
from shared.ops import doctor, rules_cli, verdicts, views
from shared.ops.gates import check_release_gates
from shared.ops.output import Progress, Table, Tally, json_line, table
from shared.ops.redrive import DeadLettered, Redriven, from_blobs, redrive, transient
from shared.ops.simulate import Options, expected_ending, simulate
from shared.outcomes import Outcome
from shared.reactions import Rule, evaluate, load_rules, suggest, throttle_key
from shared.runtime import build_engine
from shared.settings import Settings
from shared.storage import blob_container

OK, FINDINGS, ERROR, BROKEN_PIPE = 0, 1, 2, 141
#: Audit entries read when a filter is applied on this side (``audit --outcome``, ``chains``).
SCAN_LIMIT = 10_000


class CliError(Exception):
    """An operational error: printed without a traceback, exit status 2."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    # Warnings (a quarantined payload, a retried call) go to stderr; stdout stays clean for --json.
    logging.basicConfig(level=logging.WARNING, format="mlreactor: %(levelname)s: %(message)s", stream=sys.stderr)
    try:
        code = int(args.run(args))
        sys.stdout.flush()  # a closed pipe shows here, not as a complaint when the interpreter exits
        return code
    except ValidationError as exc:  # the settings: one line per bad setting, named as the environment names it
        if exc.title != Settings.__name__:
            raise
        for line in doctor.settings_problems(exc):
            print(f"mlreactor: error: {line}", file=sys.stderr)
        return ERROR
    except (CliError, RulesError, OSError, MlreactorError) as exc:
        if isinstance(exc, BrokenPipeError):
            return _quiet_pipe()
        print(f"mlreactor: error: {exc}", file=sys.stderr)
        return ERROR
    except KeyboardInterrupt:
        print("mlreactor: interrupted", file=sys.stderr)
        return 130


def _quiet_pipe() -> int:
    """The reader went away (``| head``): say nothing, and keep Python from complaining when it flushes stdout."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a real file (tests): nothing to silence
        pass
    return BROKEN_PIPE


# the parser ---------------------------------------------------------------------------------------------------
Subparsers = Any  # argparse's _SubParsersAction is private


def _command(
    sub: Subparsers, name: str, *, help: str, example: str, run: Callable[[argparse.Namespace], int],
    config: bool = True, state: bool = True, json_out: bool = True,
) -> argparse.ArgumentParser:
    """One subcommand: its help with an example, the common options it takes, and what runs it."""
    parser: argparse.ArgumentParser = sub.add_parser(
        name, help=help, description=help, epilog="example:\n  " + example.replace("\n", "\n  "),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if config:
        parser.add_argument("--config", type=Path, metavar="FILE",
                            help="rules file (default: MLREACTOR_RULES_PATH or reactions.yaml)")
    if state:
        parser.add_argument("--state", type=Path, metavar="DIR",
                            help="folder of a local SQLite ledger (default: the MLREACTOR_LEDGER/STATE_DIR settings)")
    if json_out:
        parser.add_argument("--json", action="store_true", help="JSON Lines on stdout, one object per line")
    parser.set_defaults(run=run, loads_rules=config)  # a command without --config neither reads nor names rules
    return parser


def _group(sub: Subparsers, name: str, help: str) -> Subparsers:
    parser = sub.add_parser(name, help=help, description=help)
    return parser.add_subparsers(dest=f"{name}_command", required=True, metavar="SUBCOMMAND")


def _version() -> str:
    try:
        return metadata.version("mlreactor")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def _parser() -> argparse.ArgumentParser:
    summary = __doc__.splitlines()[0].replace("``", "") if __doc__ else None
    parser = argparse.ArgumentParser(prog="mlreactor", description=summary)
    parser.add_argument("--version", action="version", version=f"mlreactor {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def _settings(args: argparse.Namespace, **overrides: Any) -> Settings:
    """The settings from the environment, with the command line's ``--config`` and ``--state`` on top."""
    values: dict[str, Any] = dict(overrides)
    if getattr(args, "loads_rules", True):
        chosen = rules_cli.resolve(getattr(args, "config", None))
        chosen.announce()
        values["rules_path"] = chosen.path
    if getattr(args, "state", None):
        values["state_dir"] = args.state
        values["ledger"] = "sqlite"
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


def _short(event_type: str | None) -> str:
    return verdicts.short_type(event_type) if event_type else "-"


def _since(text: str | None) -> datetime | None:
    try:
        return views.since(text, name="--since")
    except views.BadQuery as exc:
        raise CliError(str(exc)) from None


# live or dry --------------------------------------------------------------------------------------------------
def _add_live(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--live", action="store_true",
                        help=f"{what} for real with the live settings in the environment (default: dry-run)")


def _live_settings(settings: Settings) -> list[str]:
    """The settings present that would make an adapter live."""
    present = {
        "MLREACTOR_DRY_RUN=false": settings.dry_run is False,
        "MLREACTOR_AZUREML_LIVE": settings.azureml_live,
        "MLREACTOR_DEVOPS_ORGANIZATION_URL": bool(settings.devops_organization_url),
        "MLREACTOR_EVENTGRID_TOPIC_ENDPOINT": bool(settings.eventgrid_topic_endpoint),
        "MLREACTOR_NOTIFY_LIVE": settings.notify_live,
    }
    return [name for name, given in present.items() if given]


def _engine(args: argparse.Namespace, verb: str) -> tuple[Engine, Settings]:
    """The engine for ``replay``/``redrive``: dry unless ``--live``; says on stderr which adapters are live."""
    settings = _settings(args)
    if not args.live:
        ignored = _live_settings(settings)
        settings = settings.model_copy(update={"dry_run": True})
        if settings.ledger == "tables":
            raise CliError(
                f"{verb} without --live would record dry-run results in the shared Tables ledger "
                "(MLREACTOR_LEDGER=tables), and those events would then count as handled: give --state DIR for a "
                "local ledger, or --live"
            )
        note = f" (live settings present but not used: {', '.join(ignored)})" if ignored else ""
        print(f"mlreactor: dry-run: actions are recorded, not sent; give --live to act{note}", file=sys.stderr)
    engine = build_engine(settings)
    if args.live:
        modes = describe(engine.adapters)
        live = [k for k, m in modes.items() if m == "live"] or ["none"]
        dry = [k for k, m in modes.items() if m != "live"] or ["none"]
        print(f"mlreactor: --live: live: {', '.join(live)}; dry-run: {', '.join(dry)}", file=sys.stderr)
    return engine, settings


# replay -------------------------------------------------------------------------------------------------------
def add_replay(sub: Subparsers) -> None:
    p = _command(sub, "replay", help="run event deliveries through the engine, exactly as the function does",
                 example="mlreactor replay --state /tmp/try tests/events/eventgrid/*.json\n"
                         "mlreactor replay --json --strict deliveries/*.json | jq .outcome",
                 run=cmd_replay)
    p.add_argument("paths", nargs="+", metavar="PATH", help="a file holding one delivery, or - for stdin")
    _add_live(p, "act")
    p.add_argument("--strict", action="store_true", help="exit 1 when an event is quarantined or failed")


def cmd_replay(args: argparse.Namespace) -> int:
    """Streams: each outcome is written as it comes and only counted, so memory stays flat however long the input.
    A file that cannot be read is reported and skipped; the summary says so and the exit status is 2."""
    engine, settings = _engine(args, "replay")
    tally, unreadable = Tally(), []
    rows = None if args.json else Table(["EVENT", "TYPE", "OUTCOME", "REASON", "ACTIONS"], ids=["EVENT"])
    progress = Progress("replayed", "files", total=len(args.paths))
    try:
        for path in args.paths:
            try:
                text = _read(path)
            except CliError as exc:
                print(f"mlreactor: error: {exc}", file=sys.stderr)
                unreadable.append(path)
                continue
            for outcome in engine.handle_delivery(text):
                tally.add(outcome.outcome.value)
                if rows is None:
                    json_line({**outcome.as_dict(), "rules_file": str(settings.rules_path)})
                else:
                    actions = ", ".join(f"{a.kind}:{a.status}" for a in outcome.actions)
                    rows.add([outcome.event_id, _short(outcome.event_type), outcome.outcome.value, outcome.reason,
                              actions])
            progress.step()
    finally:
        progress.done()
        engine.ledger.close()
    summary = str(tally) + (f"; {len(unreadable)} file(s) unreadable: {', '.join(unreadable)}" if unreadable else "")
    if rows is None:
        print(f"mlreactor: {summary}", file=sys.stderr)
    else:
        rows.close()
        print(f"\n{summary}")
    if unreadable:
        return ERROR
    if args.strict and (tally[Outcome.QUARANTINED.value] or tally[Outcome.FAILED.value]):
        return FINDINGS
    return OK


def add_explain(sub: Subparsers) -> None:
    p = _command(sub, "explain", help="for each rule: matched, or the first criterion that failed",
                 example="mlreactor explain tests/events/eventgrid/model_registered.json", run=cmd_explain,
                 state=False)
    p.add_argument("path", metavar="EVENT_FILE")
    p.add_argument("--expect", metavar="RULE", help="exit 1 unless RULE would fire for the event(s)")


def add_rules(sub: Subparsers) -> None:
    rules_sub = _group(sub, "rules", "work with the rules file")
    rules_cli.register(rules_sub)
    examples = {"check": "mlreactor rules check reactions.yaml --strict",
                "test": "mlreactor rules test --config reactions.yaml   # the cases in reactions.yaml.tests/"}
    for name, example in examples.items():
        parser = rules_sub.choices[name]
        parser.epilog, parser.formatter_class = f"example:\n  {example}", argparse.RawDescriptionHelpFormatter


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
            print(dumps(report))
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
def add_audit(sub: Subparsers) -> None:
    p = _command(sub, "audit", help="what happened, newest first",
                 example="mlreactor audit --since 6h --outcome quarantined\n"
                         "mlreactor audit --event 831e1650-001e-001b-66ab-eeb76e069631 --json",
                 run=cmd_audit, config=False)
    p.add_argument("--event", metavar="ID", help="only this event id")
    p.add_argument("--correlation", metavar="ID", help="only this chain (`mlreactor chain ID` draws it)")
    p.add_argument("--since", metavar="DURATION", help="only the last DURATION (e.g. 30m, 6h, 7d)")
    p.add_argument("--outcome", choices=[o.value for o in Outcome], help="only events with this outcome")
    p.add_argument("--rule", metavar="NAME", help="only events this rule acted on")
    p.add_argument("--type", metavar="TYPE", help="only this event type (RunCompleted or the full type)")
    p.add_argument("--limit", type=int, default=200, help="at most this many entries (default 200)")


def cmd_audit(args: argparse.Namespace) -> int:
    settings = _settings(args)
    since = _since(args.since)
    filtered = bool(args.outcome or args.rule or args.type)
    ledger = open_ledger(settings)
    try:
        entries = ledger.audit(event_id=args.event, correlation_id=args.correlation, since=since,
                               limit=SCAN_LIMIT if filtered else args.limit)
    finally:
        ledger.close()
    entries = [e for e in entries if _matches(e, args)][: args.limit]
    if args.json:
        for entry in entries:
            json_line(entry.as_dict())
        return OK
    count = table(
        ["AT (UTC)", "EVENT", "TYPE", "OUTCOME", "CORRELATION", "REASON", "ACTIONS"],
        ([f"{e.at:%Y-%m-%d %H:%M:%S}", e.event_id, _short(e.event_type), e.outcome, e.correlation_id, e.reason,
          ", ".join(f"{a.get('kind')}:{a.get('status')}" for a in e.actions)] for e in entries),
        ids=["EVENT", "CORRELATION"],
    )
    if not count:
        print("(no audit records match)", file=sys.stderr)
    return OK


def _matches(entry: AuditEntry, args: argparse.Namespace) -> bool:
    if args.outcome and entry.outcome != args.outcome:
        return False
    if args.rule and args.rule not in entry.reactions and all(a.get("rule") != args.rule for a in entry.actions):
        return False
    wanted = (args.type or "").lower()
    return not wanted or wanted in (entry.event_type.lower(), verdicts.short_type(entry.event_type).lower())


# chains and one chain -----------------------------------------------------------------------------------------
def add_chains(sub: Subparsers) -> None:
    p = _command(sub, "chains", help="recent chains with their verdict and current step, most recent first",
                 example="mlreactor chains --since 7d", run=cmd_chains, config=False)
    p.add_argument("--since", metavar="DURATION", default="7d", help="chains with an event in the last DURATION")
    p.add_argument("--limit", type=int, default=20, help="at most this many chains (default 20)")
    p.add_argument("--all", action="store_true",
                   help="also lone events that started nothing (e.g. a failed run outside any chain)")


def cmd_chains(args: argparse.Namespace) -> int:
    settings = _settings(args)
    since = _since(args.since)
    ledger = open_ledger(settings)
    try:
        recent = ledger.audit(since=since, limit=SCAN_LIMIT)
        ids = dict.fromkeys(e.correlation_id for e in recent if e.correlation_id)
        chains = []
        for cid in ids:
            found = _chain(ledger, settings, cid)
            if args.all or found.started_work:
                chains.append(found)
            if len(chains) == args.limit:
                break
    finally:
        ledger.close()
    if args.json:
        for found in chains:
            json_line({k: v for k, v in found.as_dict().items() if k != "steps"} | {"steps": len(found.steps)})
        return OK
    count = table(["LAST EVENT (UTC)", "CHAIN", "VERDICT", "STEP", "STEPS", "DETAIL"],
                  ([f"{c.last_at:%Y-%m-%d %H:%M:%S}" if c.last_at else "-", c.correlation_id, c.verdict.ending.value,
                    c.verdict.step, len(c.steps), c.verdict.text] for c in chains), ids=["CHAIN"])
    if not count:
        print(f"(no chains with an event in the last {args.since})", file=sys.stderr)
    return OK


def _chain(ledger: Ledger, settings: Settings, correlation_id: str) -> verdicts.Chain:
    entries = ledger.audit(correlation_id=correlation_id, limit=1000)
    return verdicts.chain(correlation_id, entries, _now(), settings.chain_stall_after)


def _now() -> datetime:
    return SystemClock().now()


def add_chain(sub: Subparsers) -> None:
    p = _command(sub, "chain", help="one chain: its verdict, then every step oldest first (its timeline)",
                 example="mlreactor chain sim-0001 --state /tmp/sim\n"
                         "mlreactor chain sim-0001 --state /tmp/sim --html chain.html", run=cmd_chain,
                 config=False)
    p.add_argument("correlation_id", metavar="ID", help="the chain's correlation id (see `mlreactor chains`)")
    p.add_argument("--html", metavar="FILE", help="write the timeline page (as /api/timeline serves it) to FILE")


def cmd_chain(args: argparse.Namespace) -> int:
    settings = _settings(args)
    ledger = open_ledger(settings)
    try:
        entries = ledger.audit(correlation_id=args.correlation_id, limit=1000)
    finally:
        ledger.close()
    if not entries:
        raise CliError(f"no audit records for chain {args.correlation_id!r} in the {settings.ledger} ledger")
    if args.html:
        page = views.timeline_html(args.correlation_id, entries, stall_after=settings.chain_stall_after)
        Path(args.html).write_text(page, encoding="utf-8")
        print(f"wrote {args.html}", file=sys.stderr)
        return OK
    drawn = verdicts.chain(args.correlation_id, entries, _now(), settings.chain_stall_after)
    if args.json:
        json_line(drawn.as_dict())
    else:
        print_chain(drawn, sys.stdout)
    return OK


def print_chain(drawn: verdicts.Chain, out: TextIO) -> None:
    """The verdict first, then each step oldest first: when, what, its outcome, its attempts and what it did."""
    v = drawn.verdict
    print(f"chain {drawn.correlation_id}: {v.text}", file=out)
    deliveries = sum(len(s.attempts) for s in drawn.steps)
    print(f"verdict: {v.ending.value} · {len(drawn.steps)} step(s), {deliveries} deliveries", file=out)
    for step in drawn.steps:
        entry = step.decisive
        rules = f" [{', '.join(entry.reactions)}]" if entry.reactions else ""
        print(f"{step.at:%Y-%m-%d %H:%M:%S}  {step.kind:<22} {step.outcome:<11}{rules}  event {step.event_id}",
              file=out)
        pad = " " * 21
        if step.note:
            print(f"{pad}→ {step.note}", file=out)
        if entry.outcome != Outcome.ACTED.value:
            print(f"{pad}{entry.reason}", file=out)
        for a in step.actions:
            link = f"  ({views.link_label(a)}: {a['url']})" if a.get("url") else ""
            print(f"{pad}{a.get('kind')}: {a.get('status')} — {a.get('detail')}{link}", file=out)
        if len(step.attempts) > 1:
            tried = ", ".join(f"{a.outcome} {a.at:%H:%M:%S}" for a in step.attempts)
            print(f"{pad}{len(step.attempts)} attempts: {tried}", file=out)


# quarantine ---------------------------------------------------------------------------------------------------
def add_quarantine(sub: Subparsers) -> None:
    group = _group(sub, "quarantine", "events stored for a person (permanent errors)")
    p = _command(group, "list", help="what is still quarantined, oldest first, with the reason",
                 example="mlreactor quarantine list --since 7d\n"
                         "mlreactor deadletter redrive --quarantined --event-id ID --live   # once the cause is fixed",
                 run=cmd_quarantine_list, config=False)
    p.add_argument("--since", metavar="DURATION", help="only what was quarantined in the last DURATION")
    p.add_argument("--all", action="store_true", help="also events redriven since (no longer quarantined)")


def cmd_quarantine_list(args: argparse.Namespace) -> int:
    settings = _settings(args)
    since = _since(args.since)
    ledger = open_ledger(settings)
    try:
        records = [r for r in ledger.quarantined(since) if args.all or _still_quarantined(ledger, r.event_id)]
    finally:
        ledger.close()
    if args.json:
        for r in records:
            json_line({"at": r.at.isoformat(), "event_id": r.event_id, "event_key": r.event_key, "reason": r.reason,
                       "raw": r.raw})
        return OK
    count = table(["AT (UTC)", "EVENT", "REASON"], ([f"{r.at:%Y-%m-%d %H:%M:%S}", r.event_id, r.reason]
                                                    for r in records), ids=["EVENT"])
    if not count:
        print("(nothing quarantined)", file=sys.stderr)
    return OK


def _still_quarantined(ledger: Ledger, event_id: str | None) -> bool:
    """An event redriven since is no longer quarantined: its newest audit entry says what it is now."""
    if event_id is None:
        return True
    latest = ledger.audit(event_id=event_id, limit=1)
    return not latest or latest[0].outcome == Outcome.QUARANTINED.value


# deadletter redrive -------------------------------------------------------------------------------------------
def add_deadletter(sub: Subparsers) -> None:
    group = _group(sub, "deadletter", "dead-lettered and quarantined events")
    p = _command(group, "redrive", help="replay dead-lettered (or quarantined) events through the engine",
                 example="mlreactor deadletter redrive --quarantined                 # what would be redriven\n"
                         "mlreactor deadletter redrive --container deadletter --since 1d --live",
                 run=cmd_redrive)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--container", help="the Event Grid dead-letter blob container")
    source.add_argument("--quarantined", action="store_true", help="mlreactor's own quarantined events")
    p.add_argument("--since", metavar="DURATION", help="only what was dead-lettered in the last DURATION")
    p.add_argument("--event-id", metavar="ID", help="only this event")
    _add_live(p, "redrive")


def cmd_redrive(args: argparse.Namespace) -> int:
    """Without ``--live`` it only shows what would be redriven and changes nothing (no ledger writes either:
    a dry redrive recorded as done would make the real one a duplicate)."""
    since = _since(args.since)
    if args.live:
        engine, settings = _engine(args, "redrive")
    else:
        settings = _settings(args).model_copy(update={"dry_run": True})
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
        progress = Progress("redriven", "events", every=10)
        results = redrive(engine, items, reopen=args.quarantined, dry_run=not args.live, progress=progress.step)
        progress.done()
    finally:
        ledger.close()
    if not args.live:
        print("mlreactor: dry-run: nothing was redriven or changed; give --live to redrive", file=sys.stderr)
    return _print_redriven(results, args.json, str(settings.rules_path))


def _print_redriven(results: list[Redriven], as_json: bool, rules_file: str) -> int:
    if as_json:
        for result in results:
            json_line({**result.as_dict(), "rules_file": rules_file})
        return OK
    table(["ORIGIN", "EVENT", "DEAD-LETTER REASON", "OUTCOME", "REASON"],
          ([r.origin, r.event_id, r.dead_letter_reason, r.outcome, r.reason] for r in results), ids=["EVENT"])
    tally = Tally()
    for r in results:
        tally.add(r.outcome)
    print(f"\n{tally}")
    again = transient(results)
    if again:
        print(f"{len(again)} failed transiently: redrive again later (done actions are not repeated)")
    return OK


def _event_id(raw: object) -> str | None:
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return None
    return raw.get("id") if isinstance(raw, dict) else None


# doctor -------------------------------------------------------------------------------------------------------
def add_doctor(sub: Subparsers) -> None:
    _command(sub, "doctor", help="effective settings, rules, ledger, live or dry per adapter, what would fail",
             example="mlreactor doctor\nmlreactor doctor --json | jq 'select(.status == \"fail\")'",
             run=cmd_doctor)


def cmd_doctor(args: argparse.Namespace) -> int:
    try:
        findings = doctor.examine(_settings(args))
    except ValidationError as exc:
        findings = [doctor.Finding("setting", "fail", line) for line in doctor.settings_problems(exc)]
    if args.json:
        for finding in findings:
            json_line(finding.as_dict())
    else:
        table(["STATUS", "CHECK", "DETAIL"], ([f.status, f.check, f.detail] for f in findings))
    failed = [f for f in findings if f.status == "fail"]
    if failed:
        print(f"mlreactor: doctor: {len(failed)} problem(s) would make the app fail", file=sys.stderr)
        return FINDINGS
    return OK


# gates check --------------------------------------------------------------------------------------------------
def add_gates(sub: Subparsers) -> None:
    group = _group(sub, "gates", "release gates: is every release held by a person?")
    _command(group, "check", help="read every release rule's approvals now (read-only); exit 1 if any target is not "
             "gated", example="mlreactor gates check --json", run=cmd_gates_check, state=False)


def cmd_gates_check(args: argparse.Namespace) -> int:
    settings = _settings(args)
    results = check_release_gates(settings, load_rules(settings.rules_path))
    if args.json:
        for result in results:
            json_line(result.as_dict())
    else:
        count = table(["RULE", "TARGET", "ENVIRONMENT", "GATED", "WHY"],
                      ([f"{r.rule}[{r.index}]", r.target, r.environment, "yes" if r.gated else "NO", r.why]
                       for r in results))
        if not count:
            print("(no queue_release action in the rules)", file=sys.stderr)
    return OK if all(r.gated for r in results) else FINDINGS


# simulate -----------------------------------------------------------------------------------------------------
def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number between 0 and 1") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is outside [0, 1]: give the share of failing calls, e.g. 0.2")
    return value


def add_simulate(sub: Subparsers) -> None:
    p = _command(sub, "simulate", help="run the retrain → test → release chain against a simulated workspace",
                 example="mlreactor simulate --twice --shuffle --faults 0.2 --state /tmp/sim\n"
                         "mlreactor chain sim-0001 --state /tmp/sim", run=cmd_simulate)
    p.add_argument("--fail-gate", action="store_true", help="the candidate's offline test misses the thresholds")
    p.add_argument("--fail-run", choices=["retrain", "test"], help="that run of the chain fails")
    p.add_argument("--twice", action="store_true", help="deliver every event twice, as Event Grid may")
    p.add_argument("--shuffle", action="store_true", help="deliver pending events out of order")
    p.add_argument("--faults", type=_rate, default=0.0, metavar="RATE",
                   help="share of simulated Azure calls that fail transiently, in [0, 1] (e.g. 0.2)")
    p.add_argument("--seed", type=int, default=7, help="seed of --shuffle and --faults")
    p.add_argument("--reject", action="store_true", help="the reviewer rejects the release")
    p.add_argument("--expire-approval", action="store_true",
                   help="nobody approves: a reminder after 48 h, then the approval times out")
    p.add_argument("--lose-hooks", action="store_true",
                   help="Azure DevOps' service hooks never arrive: the reconciler closes the chain")
    p.add_argument("--ungated", action="store_true",
                   help="the release environment was never set up (no approval): the release is refused")


def cmd_simulate(args: argparse.Namespace) -> int:
    """Exit 1 when the chain did not reach the end the options ask for (deployed, rejected, failed)."""
    settings = _settings(args)
    rules = load_rules(settings.rules_path)
    options = Options(fail_gate=args.fail_gate, fail_run=args.fail_run, duplicates=args.twice,
                      shuffle=args.shuffle, seed=args.seed, fault_rate=args.faults, reject=args.reject,
                      expire=args.expire_approval, lose_hooks=args.lose_hooks, ungated=args.ungated)
    with tempfile.TemporaryDirectory(prefix="mlreactor-sim-") as scratch:
        ledger = SqliteLedger((args.state or Path(scratch)) / "ledger.sqlite3")
        try:
            if args.state and ledger.audit(correlation_id="sim-0001", limit=1):
                raise CliError(f"--state {args.state} already holds a simulated chain (sim-0001): give an empty "
                               "folder, or look at it with `mlreactor chain sim-0001 --state ...`")
            result = simulate(rules, ledger, options)
            entries = ledger.audit(correlation_id=result.correlation_id, limit=1000)
        finally:
            ledger.close()
    drawn = verdicts.chain(result.correlation_id, entries, result.world.clock.now(), settings.chain_stall_after)
    expected = expected_ending(options)
    reached = drawn.verdict.ending is expected
    if args.json:
        for kind, outcome in result.outcomes:
            json_line({"kind": kind, **outcome.as_dict(), "rules_file": str(settings.rules_path)})
        json_line({"verdict": drawn.verdict.as_dict(), "expected": expected.value, "reached": reached,
                   "rules_file": str(settings.rules_path)})
    else:
        _print_simulation(args, result, drawn, sys.stdout)
        mark = "as expected" if reached else f"NOT the expected end ({expected.value})"
        print(f"\n== verdict: {drawn.verdict.ending.value} — {drawn.verdict.text} ({mark})")
    return OK if reached else FINDINGS


def _print_simulation(args: argparse.Namespace, result: Any, drawn: verdicts.Chain, out: TextIO) -> None:
    state = f" --state {args.state}" if args.state else ""
    print("== deliveries (every event through the real engine, rules and ledger)", file=out)
    table(["EVENT", "KIND", "OUTCOME", "REASON"],
          ([o.event_id, kind, o.outcome.value, o.reason] for kind, o in result.outcomes), out, ids=["EVENT"])
    print(f"\n== the chain's timeline (mlreactor chain {result.correlation_id}{state or ' --state DIR'})", file=out)
    print_chain(drawn, out)
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
    if args.state:
        print(f"\nthe ledger is kept: mlreactor chain {result.correlation_id}{state} · mlreactor audit --correlation "
              f"{result.correlation_id}{state} · mlreactor chain {result.correlation_id}{state} --html chain.html",
              file=out)
    else:
        print("\n(the ledger was a scratch one; give --state DIR to keep it for `mlreactor chain` and `audit`)",
              file=out)


SUBCOMMANDS: tuple[Callable[[Subparsers], None], ...] = (
    add_replay, add_explain, add_rules, add_audit, add_chains, add_chain, add_quarantine, add_deadletter,
    add_doctor, add_gates, add_simulate,
)


if __name__ == "__main__":
    raise SystemExit(main())
