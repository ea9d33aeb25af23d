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

import difflib
import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from shared.errors import PermanentError
from shared.jsontext import canonical

#: A dotted path. Linear to match: every repetition starts with the one character its predecessor cannot hold (".").
_PATH = re.compile(r"[A-Za-z_][\w-]*(?:\.[\w-]+)*")


@dataclass(frozen=True)
class Placeholder:
    """One ``{{ path | filter }}`` inside a template; ``start`` is its offset in the template."""

    path: str
    filter: str | None
    start: int


def _slug(value: object) -> str:
    """Lower-case letters, digits, ``-`` and ``_`` only: safe in job names, branch names and URLs."""
    return re.sub(r"[^a-z0-9_-]+", "-", str(value).lower()).strip("-")


FILTERS: dict[str, Callable[[Any], Any]] = {
    "optional": lambda v: v,  # a missing value renders as "" instead of failing the action (see _value)
    "json": canonical,
    "lower": lambda v: str(v).lower(),
    "upper": lambda v: str(v).upper(),
    "slug": _slug,
}


class TemplateError(PermanentError):
    """A template that names a value the event does not have, or a filter that does not exist."""


def check(template: str) -> list[str]:
    """Problems with a template's syntax (for rules validation); empty when it is well formed."""
    return list(_scan(template)[1])


def placeholders(template: str) -> list[Placeholder]:
    """The well-formed placeholders of a template, in order (for the static checks of ``rules check``)."""
    return [piece for piece in _scan(template)[0] if isinstance(piece, Placeholder)]


@functools.lru_cache(maxsize=4096)  # templates come from the rules file: a bounded set, scanned once each
def _scan(template: str) -> tuple[tuple[str | Placeholder, ...], tuple[str, ...]]:
    """Split a template into text and placeholders with ``str.find`` — no regex that could backtrack.

    Returns the pieces and the problems: an unclosed ``{{``, a stray ``}}``, a placeholder that is not a path,
    an unknown filter. Single braces are text (JSON in a message is fine).
    """
    pieces: list[str | Placeholder] = []
    problems: list[str] = []
    i = 0
    while i < len(template):
        opening, closing = template.find("{{", i), template.find("}}", i)
        if closing != -1 and (opening == -1 or closing < opening):
            problems.append(f"stray '}}}}' in {template[max(0, closing - 30):closing + 2]!r}: no '{{{{' opens it")
            pieces.append(template[i:closing + 2])
            i = closing + 2
            continue
        if opening == -1:
            pieces.append(template[i:])
            break
        pieces.append(template[i:opening])
        end = template.find("}}", opening + 2)
        nested = template.find("{{", opening + 2)
        if end == -1 or (nested != -1 and nested < end):
            snippet = template[opening:opening + 40]
            problems.append(f"unclosed placeholder {snippet!r}: close it with '}}}}'")
            pieces.append(template[opening:])
            break
        braces = template[opening:end + 2]
        path, bar, name = (part.strip() for part in template[opening + 2:end].partition("|"))
        if not _PATH.fullmatch(path) or (bar and not name.isidentifier()):
            problems.append(f"{braces!r} is not a placeholder: use {{{{ path.to.value }}}} or {{{{ path | filter }}}}")
        elif bar and name not in FILTERS:
            close = difflib.get_close_matches(name, list(FILTERS), n=1)
            hint = f" — did you mean {close[0]!r}?" if close else f" (filters: {', '.join(FILTERS)})"
            problems.append(f"unknown filter {name!r} in {braces!r}{hint}")
        pieces.append(Placeholder(path, name or None, opening))
        i = end + 2
    return tuple(pieces), tuple(problems)


def lookup(context: Mapping[str, Any], path: str) -> Any:
    """Resolve a dotted path; tag keys may themselves contain dots (``run.tags.azureml.pipelineid``)."""
    current: Any = context
    steps = _steps(path)
    i = 0
    while i < len(steps):
        if not (type(current) is dict or isinstance(current, Mapping)):  # the ABC check costs more than the rest
            raise KeyError(path)
        for key, after in steps[i]:
            if key in current:
                current = current[key]
                i = after
                break
        else:
            raise KeyError(path)
    return current


@functools.lru_cache(maxsize=4096)  # paths come from the rules file, as templates do
def _steps(path: str) -> tuple[tuple[tuple[str, int], ...], ...]:
    """For each part of a dotted path, the keys that may start there — longest first, so a tag named "a.b" is
    found as one key — each with the part that follows it."""
    parts = path.split(".")
    return tuple(
        tuple((".".join(parts[i:j]), j) for j in range(len(parts), i, -1)) for i in range(len(parts))
    )


def render(template: str, context: Mapping[str, Any]) -> Any:
    """Render one template string against an event context."""
    if "{{" not in template and "}}" not in template:  # plain text, most parameters: nothing to scan
        return template
    pieces, problems = _scan(template)
    if problems:
        raise TemplateError(f"{template!r}: {problems[0]}")
    alone = _alone(template)
    if alone is not None:
        return _value(alone, context)
    out = []
    for piece in pieces:
        if isinstance(piece, str):
            out.append(piece)
        else:
            value = _value(piece, context)
            out.append(value if isinstance(value, str) else canonical(value))
    return "".join(out)


@functools.lru_cache(maxsize=4096)
def _alone(template: str) -> Placeholder | None:
    """The placeholder a template is made of, blanks aside: its value is rendered as it is (a list stays a list)."""
    parts = [piece for piece in _scan(template)[0] if not (isinstance(piece, str) and not piece.strip())]
    return parts[0] if len(parts) == 1 and isinstance(parts[0], Placeholder) else None


def render_tree(value: Any, context: Mapping[str, Any]) -> Any:
    """Render every string inside nested dicts and lists (keys included); other values pass through."""
    if isinstance(value, str):
        return render(value, context)
    if type(value) is dict or isinstance(value, Mapping):  # the ABC check costs more than rendering a dict
        return {str(render(str(k), context)): render_tree(v, context) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [render_tree(v, context) for v in value]
    return value


def _value(placeholder: Placeholder, context: Mapping[str, Any]) -> Any:
    path, name = placeholder.path, placeholder.filter
    try:
        value = lookup(context, path)
    except KeyError:
        if name == "optional":
            return ""
        available = ", ".join(sorted(k for k in context if not k.startswith("_")))
        raise TemplateError(f"{{{{ {path} }}}} is not available for this event (available: {available})") from None
    if name is None:
        return value
    return FILTERS[name](value)
