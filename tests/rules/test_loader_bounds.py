"""A rules loader that cannot be made to hang: every hostile file gets a clear error, quickly.

Bounds on size, depth and alias expansion are counted, not timed, so they hold on any machine; the CPU time each
answer took is asserted too (under a second), and Hypothesis throws mutated rule files and random text at the
loader, bounded in examples and time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared import templates
from shared.errors import RulesError
from shared.reactions import read_rules
from shared.rules_yaml import MAX_BYTES, MAX_DEPTH, MAX_NODES
from tests.conftest import ROOT

SHIPPED = (ROOT / "reactions.yaml").read_text()


def refused(text: str) -> list[str]:
    """The errors a text gets, asserting the answer took under a second of CPU."""
    started = time.process_time()
    with pytest.raises(RulesError) as caught:
        read_rules(text, "hostile.yaml")
    assert time.process_time() - started < 1.0
    return caught.value.errors


def billion_laughs(levels: int = 12) -> str:
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_refused_before_it_expands() -> None:
    (error,) = refused(billion_laughs())
    assert error.startswith("hostile.yaml:1:") and f"expands to more than {MAX_NODES} values" in error


def test_an_alias_that_contains_itself_is_refused() -> None:
    (error,) = refused("a: &a [*a]\n")
    assert error.startswith("hostile.yaml:") and "nested deeper than" in error


@pytest.mark.parametrize("text", [
    "x: " + "[" * 50_000, "x: " + "{a: " * 50_000, "x:\n" + "".join(f"{' ' * (i + 1)}a:\n" for i in range(200)),
])
def test_deep_nesting_is_refused_at_the_depth_limit(text: str) -> None:
    (error,) = refused(text)
    assert f"nested deeper than {MAX_DEPTH} levels" in error


def test_an_oversized_file_is_refused_unread() -> None:
    (error,) = refused("#" * (MAX_BYTES + 1))
    assert error == (f"hostile.yaml: error: the file has more than {MAX_BYTES} characters, the most a rules file "
                     "may have")


def test_an_integer_of_ten_thousand_digits_is_a_clear_error() -> None:
    (error,) = refused("version: " + "9" * 10_000 + "\n")
    assert error.startswith("hostile.yaml:1:10: error: '9999999999999999999999999999999999999...' is not a valid value")


def test_a_template_that_would_backtrack_is_answered_at_once() -> None:
    started = time.process_time()
    problems = templates.check("{{ a" + "." * 50_000 + "!" + " }}") + templates.check("{{ " + "a." * 50_000)
    assert time.process_time() - started < 1.0
    assert len(problems) == 2


lines = SHIPPED.splitlines(keepends=True)


@st.composite
def mutated_rules(draw: st.DrawFn) -> str:
    """The shipped rules with a few lines deleted, duplicated, re-indented, or with junk inserted."""
    out = list(lines)
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(out) - 1))
        action = draw(st.sampled_from(["delete", "duplicate", "indent", "junk", "alias"]))
        if action == "delete":
            del out[i]
        elif action == "duplicate":
            out.insert(i, out[i])
        elif action == "indent":
            out[i] = " " * draw(st.integers(0, 3)) + out[i].lstrip(" ")
        elif action == "alias":
            out.insert(i, draw(st.sampled_from(["x: &x [*x]\n", "<<: *nowhere\n", "- *a\n", "&a b: c\n"])))
        else:
            out.insert(i, draw(st.text(st.characters(codec="utf-8"), max_size=40)) + "\n")
    return "".join(out)


def answered(load: Callable[[], Any]) -> None:
    started = time.process_time()
    try:
        load()
    except RulesError as exc:
        assert exc.errors and all(e.strip() for e in exc.errors)
        assert "(top)" not in str(exc) and "<unicode string>" not in str(exc)
    assert time.process_time() - started < 1.0


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_rules())
def test_mutated_rule_files_get_rules_or_clear_errors(text: str) -> None:
    answered(lambda: read_rules(text, "mutated.yaml", ROOT / "reactions.yaml"))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(st.sampled_from("{}[]:-&*!|>'\"#,.? \n\tab1"), max_size=200))
def test_random_yaml_punctuation_gets_rules_or_clear_errors(text: str) -> None:
    answered(lambda: read_rules(text, "random.yaml"))


@settings(max_examples=200, deadline=None)
@given(st.text(st.sampled_from("{} |.a_-7*"), max_size=80))
def test_any_template_is_checked_or_rendered_without_surprises(text: str) -> None:
    problems = templates.check(text)
    try:
        templates.render(text, {"a": {"b": "x"}, "a_": 1})
    except templates.TemplateError:
        return
    assert problems == []
