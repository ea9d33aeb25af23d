"""Loading rules: the strict, bounded reader beside plain ``yaml.load`` (the old path), and how fast hostile files
are refused. Loading happens once per cold start; a hostile file must be answered in well under a second.

Each figure is the median of N runs in this process; ratios are against the same-run baseline.

    python benchmarks/rules_load.py [--runs 21]
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shared import templates  # noqa: E402
from shared.errors import RulesError  # noqa: E402
from shared.reactions import parse_rules, read_rules  # noqa: E402
from shared.rules_yaml import MAX_BYTES, _Loader  # noqa: E402

#: The placeholder regex templates used before (nested quantifiers); kept here only as the render baseline.
_OLD = re.compile(r"\{\{\s*(?P<path>[A-Za-z_][\w\-]*(?:\.[\w\-.]+?)*)\s*(?:\|\s*(?P<filter>\w+)\s*)?\}\}")


def median_ms(action: Callable[[], object], runs: int) -> float:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1000


def refuse(text: str) -> None:
    try:
        read_rules(text, "hostile.yaml")
    except RulesError:
        return
    raise AssertionError("a hostile file was accepted")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=21)
    runs = parser.parse_args().runs
    text = (ROOT / "reactions.yaml").read_text(encoding="utf-8")

    def old_load() -> None:
        # PyYAML's own constructor with the same YAML 1.2 booleans (``on:`` stays a key): the old path
        parse_rules(yaml.load(text, Loader=_Loader), "reactions.yaml")

    baseline = median_ms(old_load, runs)
    strict = median_ms(lambda: read_rules(text, "reactions.yaml"), runs)
    print(f"load shipped rules: yaml.load + validate {baseline:.1f} ms; strict reader + validate {strict:.1f} ms "
          f"({strict / baseline:.2f}x)")

    context = {"model": {"name": "credit-fraud", "version": "2", "id": "credit-fraud:2"}, "monitor": {"name": "m"}}
    template = "offline test of {{ model.id }} ({{ model.name | lower }}) after drift on {{ monitor.name }}"
    old = median_ms(lambda: [_OLD.sub(lambda m: str(templates.lookup(context, m["path"])), template)
                             for _ in range(1000)], runs)
    new = median_ms(lambda: [templates.render(template, context) for _ in range(1000)], runs)
    print(f"render 1000 templates: old regex {old:.2f} ms; scanner {new:.2f} ms ({new / old:.2f}x)")

    bomb = "a0: &a0 [" + ", ".join(["lol"] * 10) + "]\n" + "".join(
        f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 12))
    hostile = {
        "alias bomb (10^12 values)": bomb,
        "nesting 50,000 deep": "x: " + "[" * 50_000,
        "file over the size limit": "#" * (MAX_BYTES + 1),
        "backtracking template": "allowed_workspaces: [x]\nrules: [{name: r, on: RunCompleted, do: [{notify: "
                                 "{channels: [c], text: '{{ a" + "." * 30_000 + "!'}}]}]\n",
    }
    for name, body in hostile.items():
        took = median_ms(lambda body=body: refuse(body), max(3, runs // 4))
        print(f"refuse {name}: {took:.1f} ms ({took / strict:.2f}x loading the shipped rules)")
    old_template = "{{ a" + "." * 24 + "!"
    started = time.perf_counter()
    _OLD.search(old_template)
    print(f"old regex on a 24-dot unclosed placeholder: {(time.perf_counter() - started) * 1000:.0f} ms "
          "(doubles with every dot)")


if __name__ == "__main__":
    main()
