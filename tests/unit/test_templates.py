"""Action parameters are rendered from events in a sandbox: event values are data, never code."""

from __future__ import annotations

import pytest

from shared.templates import TemplateError, check, render, render_tree

CONTEXT = {
    "model": {"name": "{{ 7*7 }}", "version": "3", "tags": {"azureml.pipelineid": "p-1", "stage": "Candidate"}},
    "run": {"id": "$(curl x)", "tags": {}},
    "drift": {"coefficient": 0.42},
}


@pytest.mark.parametrize("hostile", ["{{ 7*7 }}", "$(curl x)", "`rm -rf /`", "{% import os %}", "${IFS}"])
def test_event_values_are_inserted_verbatim_never_rendered_again(hostile: str) -> None:
    context = {"model": {"name": hostile}}
    assert render("name={{ model.name }}", context) == f"name={hostile}"
    assert render("{{ model.name }}", context) == hostile


def test_a_lone_placeholder_keeps_the_value_type() -> None:
    assert render("{{ drift.coefficient }}", CONTEXT) == 0.42
    assert render("{{ model.tags }}", CONTEXT) == CONTEXT["model"]["tags"]
    assert render("c={{ drift.coefficient }}", CONTEXT) == "c=0.42"


def test_tag_keys_containing_dots_are_found() -> None:
    assert render("{{ model.tags.azureml.pipelineid }}", CONTEXT) == "p-1"


@pytest.mark.parametrize(("template", "expected"), [
    ("{{ model.tags.stage | lower }}", "candidate"),
    ("{{ model.tags.stage | upper }}", "CANDIDATE"),
    ("{{ model.name | slug }}", "7-7"),
    ("{{ model.version | json }}", '"3"'),
])
def test_filters(template: str, expected: str) -> None:
    assert render(template, CONTEXT) == expected


def test_a_missing_value_is_an_error_that_names_the_path_and_what_is_available() -> None:
    with pytest.raises(TemplateError, match=r"\{\{ monitor\.name \}\} is not available.*drift, model, run"):
        render("{{ monitor.name }}", CONTEXT)


def test_optional_renders_a_missing_value_as_empty() -> None:
    assert render("owner={{ run.tags.owner | optional }}", CONTEXT) == "owner="
    assert render("{{ model.version | optional }}", CONTEXT) == "3"


def test_render_tree_renders_keys_and_nested_values() -> None:
    tree = {"inputs": {"model": "azureml:{{ model.name }}:{{ model.version }}"}, "n": 1, "l": ["{{ run.id }}"]}
    assert render_tree(tree, CONTEXT) == {"inputs": {"model": "azureml:{{ 7*7 }}:3"}, "n": 1, "l": ["$(curl x)"]}


@pytest.mark.parametrize("template", ["{{ 7*7 }}", "{{ model.name | nope }}", "{{ __import__('os') }}", "{{}}"])
def test_check_rejects_anything_but_paths_and_known_filters(template: str) -> None:
    assert check(template)


def test_check_accepts_plain_text_and_placeholders() -> None:
    assert check("offline test of {{ model.id }} ({{ run.status | lower }})") == []
