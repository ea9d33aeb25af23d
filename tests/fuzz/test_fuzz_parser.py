"""Hypothesis against the payload parser with what real deliveries must not break it with: numbers that are not
numbers, lone surrogates, deep nesting, huge values — in any field of a documented sample, in either schema.

Whatever comes in, the parser answers with typed events or clear parse failures (never another exception), and an
event it lets through is storable and comparable: JSON without NaN, valid UTF-8, bounded depth. Bounded in time:
a fixed number of examples, no shrinking past what a failure needs.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.errors import EventParseError
from shared.events import MAX_DEPTH, AzureMLEvent, ParseFailure, parse_delivery
from tests.conftest import SAMPLES, delivery

surrogates = st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=3)
nasty_leaves = st.one_of(
    st.sampled_from([float("nan"), float("inf"), float("-inf")]),
    st.builds(lambda s, t: f"{t}{s}{t}", surrogates, st.text(max_size=5)),
    st.integers(min_value=1, max_value=200_000).map(lambda n: "x" * n),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**70), max_value=2**70),
)


def nest(value: Any, levels: int, as_dict: bool) -> Any:
    for _ in range(levels):
        value = {"k": value} if as_dict else [value]
    return value


nasty = st.one_of(
    nasty_leaves,
    st.builds(nest, nasty_leaves | st.just("bottom"), st.integers(min_value=1, max_value=1_500), st.booleans()),
)


@st.composite
def poisoned_samples(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A documented sample with a nasty value in one of its fields, envelope or data, or as a new key."""
    sample = delivery(draw(st.sampled_from(SAMPLES)), draw(st.sampled_from(["eventgrid", "cloudevents"])))
    target = sample[0]
    if isinstance(target.get("data"), dict) and draw(st.booleans()):
        target = target["data"]
    key = draw(st.sampled_from(sorted(target)) | st.just("extra") | surrogates)
    target[key] = draw(nasty)
    return sample


def walk_depth(value: Any) -> int:
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else []
        stack.extend((child, depth + 1) for child in children)
    return deepest


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(payload=poisoned_samples(), as_text=st.booleans())
def test_the_parser_answers_any_poisoned_payload_with_events_it_can_store_or_clear_failures(
    payload: list[dict[str, Any]], as_text: bool
) -> None:
    try:
        text = json.dumps(payload) if as_text else None  # NaN becomes the NaN literal, as a careless sender writes
    except (RecursionError, ValueError):
        text = None
    try:
        items = parse_delivery(text if text is not None else payload)
    except EventParseError as exc:
        assert str(exc), "a whole-delivery failure says why"
        return
    assert len(items) == 1
    (item,) = items
    if isinstance(item, ParseFailure):
        assert item.reason and "\n" not in item.reason[:200]
        item.reason.encode("utf-8")  # the reason itself is storable
        return
    assert isinstance(item, AzureMLEvent)
    stored = json.dumps(item.raw(), allow_nan=False)  # no NaN/inf left in what is kept and redriven
    stored.encode("utf-8")
    item.key.encode("utf-8")
    assert walk_depth(item.raw()) <= MAX_DEPTH + 2
    json.dumps(item.context(), allow_nan=False, default=str)
