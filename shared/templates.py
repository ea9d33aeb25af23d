"""Sandboxed parameter templates: ``{{ model.name }}``, ``{{ run.tags.stage | lower }}``.

Templates come from the rules file (trusted); values come from events (data). Rendering is a single pass of plain
path lookups, so a value is never itself rendered, evaluated or spliced into code: a model named ``{{ 7*7 }}`` or
``$(curl x)`` stays exactly that string. There are no expressions, calls or attribute access — only dotted paths into
the event context and a few filters.

A parameter that is exactly one placeholder keeps the value's type (``data: "{{ run.tags }}"`` gives an object);
anything else renders to a string. A path the event lacks fails the action, unless the filter is ``optional``
(``{{ run.tags.owner | optional }}`` renders as empty).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from shared.errors import PermanentError

_PLACEHOLDER = re.compile(r"\{\{\s*(?P<path>[A-Za-z_][\w\-]*(?:\.[\w\-.]+?)*)\s*(?:\|\s*(?P<filter>\w+)\s*)?\}\}")
_ANY_BRACES = re.compile(r"\{\{.*?\}\}")


def _slug(value: object) -> str:
    """Lower-case letters, digits, ``-`` and ``_`` only: safe in job names, branch names and URLs."""
    return re.sub(r"[^a-z0-9_-]+", "-", str(value).lower()).strip("-")


FILTERS: dict[str, Callable[[Any], Any]] = {
    "optional": lambda v: v,  # a missing value renders as "" instead of failing the action (see _value)
    "json": lambda v: json.dumps(v, sort_keys=True, default=str),
    "lower": lambda v: str(v).lower(),
    "upper": lambda v: str(v).upper(),
    "slug": _slug,
}


class TemplateError(PermanentError):
    """A template that names a value the event does not have, or a filter that does not exist."""


def check(template: str) -> list[str]:
    """Problems with a template's syntax (for rules validation); empty when it is well formed."""
    problems = []
    for braces in _ANY_BRACES.findall(template):
        match = _PLACEHOLDER.fullmatch(braces)
        if match is None:
            problems.append(f"{braces!r} is not a placeholder: use {{{{ path.to.value }}}} or {{{{ path | filter }}}}")
        elif match["filter"] and match["filter"] not in FILTERS:
            problems.append(f"unknown filter {match['filter']!r} in {braces!r} (filters: {', '.join(FILTERS)})")
    return problems


def lookup(context: Mapping[str, Any], path: str) -> Any:
    """Resolve a dotted path; tag keys may themselves contain dots (``run.tags.azureml.pipelineid``)."""
    current: Any = context
    parts = path.split(".")
    i = 0
    while i < len(parts):
        if not isinstance(current, Mapping):
            raise KeyError(path)
        # Longest key first, so a tag named "a.b" is found as one key.
        for j in range(len(parts), i, -1):
            key = ".".join(parts[i:j])
            if key in current:
                current = current[key]
                i = j
                break
        else:
            raise KeyError(path)
    return current


def render(template: str, context: Mapping[str, Any]) -> Any:
    """Render one template string against an event context."""
    whole = _PLACEHOLDER.fullmatch(template.strip())
    if whole is not None:
        return _value(whole, context)

    def substitute(match: re.Match[str]) -> str:
        value = _value(match, context)
        return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)

    return _PLACEHOLDER.sub(substitute, template)


def render_tree(value: Any, context: Mapping[str, Any]) -> Any:
    """Render every string inside nested dicts and lists (keys included); other values pass through."""
    if isinstance(value, str):
        return render(value, context)
    if isinstance(value, Mapping):
        return {str(render(str(k), context)): render_tree(v, context) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [render_tree(v, context) for v in value]
    return value


def _value(match: re.Match[str], context: Mapping[str, Any]) -> Any:
    path, name = match["path"], match["filter"]
    try:
        value = lookup(context, path)
    except KeyError:
        if name == "optional":
            return ""
        available = ", ".join(sorted(k for k in context if not k.startswith("_")))
        raise TemplateError(f"{{{{ {path} }}}} is not available for this event (available: {available})") from None
    if name is None:
        return value
    if name not in FILTERS:
        raise TemplateError(f"unknown filter {name!r} (filters: {', '.join(FILTERS)})")
    return FILTERS[name](value)
