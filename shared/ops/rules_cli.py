"""The CLI's rules commands — ``rules check``, ``rules test`` — and which rules file every command loads.

Which file: ``--config FILE``, else ``MLREACTOR_RULES_PATH``, else ``./reactions.yaml`` in the current directory,
else the example bundled with mlreactor. Every command that loads rules says which one on stderr (and in its
``--json`` where it owns the output), so a check of the wrong file cannot pass unnoticed.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from shared.errors import ConfigError, RulesError, RulesUnreadable
from shared.jsontext import dumps
from shared.ops.rules_test import case_files, default_dir, run_cases
from shared.reactions import load_rules
from shared.rules_check import check
from shared.runtime import report_configuration
from shared.settings import PROJECT_ROOT, Settings


@dataclass(frozen=True)
class RulesFile:
    path: Path
    origin: str  # "--config", "MLREACTOR_RULES_PATH", "current directory", "bundled example"

    def announce(self) -> None:
        print(f"mlreactor: rules: {self.path} ({self.origin})", file=sys.stderr)


def resolve(config: Path | None, settings: Settings | None = None, *, given: str = "--config") -> RulesFile:
    """The rules file a command uses; ``given`` names where ``config`` came from."""
    if config is not None:
        return RulesFile(config, given)
    settings = settings or Settings()
    if "rules_path" in settings.model_fields_set:
        return RulesFile(settings.rules_path, "MLREACTOR_RULES_PATH")
    local = Path("reactions.yaml")
    if local.is_file():
        return RulesFile(local, "current directory")
    return RulesFile(PROJECT_ROOT / "reactions.yaml", "bundled example")


def register(rules_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``rules`` subcommands."""
    check_p = rules_sub.add_parser("check", help="validate a rules file and check what would break at run time")
    check_p.add_argument("file", nargs="?", type=Path, help="default: as every command finds its rules file")
    check_p.add_argument("--config", type=Path, help="the rules file (same as FILE)")
    check_p.add_argument("--strict", action="store_true", help="warnings fail too (exit 1)")
    check_p.add_argument("--json", action="store_true", help="one JSON object: the file and every finding")
    check_p.set_defaults(run=cmd_rules_check)

    test_p = rules_sub.add_parser("test", help="run a folder of rule cases (event + expectations), dry, nothing sent")
    test_p.add_argument("dir", nargs="?", type=Path, metavar="DIR", help="default: <rules file>.tests/ beside it")
    test_p.add_argument("--config", type=Path, help="the rules file")
    test_p.add_argument("--json", action="store_true", help="JSON Lines: one object per case")
    test_p.set_defaults(run=cmd_rules_test)


def cmd_rules_check(args: argparse.Namespace) -> int:
    """0: no errors (warnings allowed unless --strict); 1: errors; 2: the file is missing or unreadable."""
    chosen = resolve(args.file or args.config, given="argument" if args.file else "--config")
    chosen.announce()
    findings: list[dict[str, object]] = []
    lines: list[str] = []
    summary = ""
    try:
        rules = load_rules(chosen.path)
    except RulesUnreadable:
        raise
    except RulesError as exc:
        lines = list(exc.errors)
        findings = [_load_error(line, str(chosen.path)) for line in exc.errors]
        errors, warnings = len(exc.errors), 0
    else:
        try:  # the deployment's settings against the rules: subscribed workspaces not allowed fail the check
            report_configuration(Settings(), rules)
        except ConfigError as exc:
            lines, findings = [f"{chosen.path}: error: {exc}"], [{"severity": "error", "message": str(exc)}]
        found = check(rules)
        lines += [f.line(str(chosen.path)) for f in found]
        findings += [f.as_dict() for f in found]
        warnings = sum(f.severity == "warning" for f in found)
        errors = len(lines) - warnings
        spec = rules.spec
        summary = (f"{len(spec.rules)} rule(s) ({sum(r.enabled for r in spec.rules)} enabled), "
                   f"{len(spec.allowed_workspaces)} allowed workspace(s), {len(spec.channels)} channel(s)")
    failed = errors > 0 or (args.strict and warnings > 0)
    if args.json:
        print(json.dumps({"rules_file": str(chosen.path), "ok": not failed, "errors": errors, "warnings": warnings,
                          "findings": findings}))
        return 1 if failed else 0
    for line in lines:
        print(line, file=sys.stderr)
    if failed:
        print(f"{chosen.path}: {errors} error(s), {warnings} warning(s)"
              + (" (--strict: warnings fail)" if not errors else ""), file=sys.stderr)
        return 1
    notes = f"; {warnings} warning(s)" if warnings else ""
    print(f"{chosen.path}: OK — {summary}{notes}")
    return 0


def _load_error(line: str, source: str) -> dict[str, object]:
    """``file:3:5: error: rule 'x': ...`` as a finding: the line and column apart, the message without them."""
    rest = line.removeprefix(f"{source}:")
    where, _, message = rest.partition(": error: ")
    line_no, _, column = where.partition(":")
    if not message or not line_no.isdigit() or not column.isdigit():
        return {"severity": "error", "line": None, "column": None, "message": line.removeprefix(f"{source}: error: ")}
    return {"severity": "error", "line": int(line_no), "column": int(column), "message": message}


def cmd_rules_test(args: argparse.Namespace) -> int:
    """0: every case passed; 1: a case failed (the diff says where); 2: no such folder or rules file."""
    chosen = resolve(args.config)
    chosen.announce()
    rules = load_rules(chosen.path)
    folder = args.dir or default_dir(chosen.path)
    if not folder.is_dir() or not case_files(folder):
        raise RulesUnreadable(str(folder), ["no case files (*.yaml) in this folder"])
    passed = failed = 0
    for result in run_cases(rules, folder):
        passed, failed = passed + result.passed, failed + (not result.passed)
        if args.json:
            print(dumps({"rules_file": str(chosen.path), **result.as_dict()}), flush=True)
            continue
        print(f"{'ok  ' if result.passed else 'FAIL'} {result.name}" + (
            f" — {result.description}" if result.description else ""))
        if not result.passed:
            print(f"  ({result.file})")
            for mismatch in result.mismatches:
                print("\n".join(mismatch.lines()))
    if not args.json:
        print(f"\n{passed + failed} case(s): {passed} passed, {failed} failed ({chosen.path} against {folder})")
    return 1 if failed else 0
