"""The rules file (``reactions.yaml``): its model, loading with every error listed, matching and explanation.

The YAML is read by ``shared/rules_yaml.py`` (strict and bounded), so every error carries ``file:line:column``;
what loads but would break at run time is for ``shared/rules_check.py`` (``mlreactor rules check``).

```yaml
version: 1
allowed_workspaces: [/subscriptions/.../workspaces/mlw-prod]
channels:
  ops-teams: {type: teams, url_setting: MLREACTOR_TEAMS_OPS_URL}
rules:
  - name: retrain-on-drift
    on: [DatasetDriftDetected, ModelMonitorSignal]
    when: {drift_coefficient_above: 0.5}
    throttle: {once_within: 6h, group_by: [monitor.name]}
    do:
      - run_pipeline: {purpose: retrain, job_yaml: pipelines/retrain.yml}
```
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shared import templates
from shared.actions import PARAMS, ActionKind, Params
from shared.channels import Channel
from shared.clock import bounded_duration
from shared.errors import RulesError, RulesUnreadable
from shared.event_fields import CONTEXT_FIELDS
from shared.events import AzureMLEvent, EventKind, Workspace
from shared.rules_yaml import MAX_BYTES, Document, YamlProblem
from shared.rules_yaml import load as load_yaml
from shared.workspaces import resolve_allowed

_RULE_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
#: The top-level names of an event's template context (see ``AzureMLEvent.context``).
CONTEXT_ROOTS = tuple(dict.fromkeys(name.split(".")[0] for row in CONTEXT_FIELDS for name in row.names()))
#: ``once_per`` is a throttle window that does not end within any retention anyone configures.
ONCE_WINDOW = timedelta(days=36500)
#: A throttle window: from a second to a year (a longer one is a typo, and overflows date arithmetic).
THROTTLE_RANGE = (timedelta(seconds=1), timedelta(days=366))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TagCriteria(_Strict):
    """Tags of the event's model or run: ``equals`` {key: value}, ``exists`` [keys], ``absent`` [keys]."""

    equals: dict[str, str] = Field(default_factory=dict)
    exists: list[str] = Field(default_factory=list)
    absent: list[str] = Field(default_factory=list)


class When(_Strict):
    """Criteria; all that are given must hold. Globs use ``*``/``?``; ``*_regex`` fields take a full regex."""

    model_name: str | None = None
    model_name_regex: str | None = None
    tags: TagCriteria | None = None
    run_status: list[str] | None = None
    experiment_name: str | None = None
    run_type: str | None = None
    monitor_name: str | None = None
    signal_name: str | None = None
    drift_coefficient_above: float | None = None

    @field_validator("model_name_regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None
        return value

    @field_validator("run_status", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value


class Throttle(_Strict):
    """At most one firing of the rule per ``once_within`` for each combination of ``group_by`` values."""

    once_within: timedelta
    group_by: list[str] = Field(default_factory=list)

    @field_validator("once_within", mode="before")
    @classmethod
    def _duration(cls, value: object) -> timedelta:
        return bounded_duration(value, *THROTTLE_RANGE)


class Action(_Strict):
    kind: ActionKind
    params: Params

    @cached_property
    def template(self) -> dict[str, Any]:
        """The parameters as the rules wrote them, rendered anew for each event (``templates.render_tree`` builds a
        new tree and never changes this one); dumped once, since a loaded rule does not change."""
        return self.params.model_dump(exclude={"id", "if_"})


class Rule(_Strict):
    name: str
    description: str = ""
    enabled: bool = True
    on: list[EventKind] = Field(min_length=1)
    when: When = Field(default_factory=When)
    throttle: Throttle | None = None
    #: Fire at most once, ever, for each combination of these values (e.g. ``[model.id]``: one offline test per
    #: model version however many ModelRegistered events arrive).
    once_per: list[str] | None = None
    do: list[Action] = Field(min_length=1)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _RULE_NAME.match(value):
            raise ValueError("use 1-63 lower-case letters, digits, '.', '_' or '-', starting with a letter or digit")
        return value

    @field_validator("on", mode="before")
    @classmethod
    def _kinds(cls, value: object) -> object:
        values = [value] if isinstance(value, str) else value
        if not isinstance(values, list):
            return values
        known = {k.value.lower(): k.value for k in EventKind if k is not EventKind.UNKNOWN}
        out = []
        for item in values:
            text = str(item).removeprefix("Microsoft.MachineLearningServices.")
            if text.lower() not in known:
                raise ValueError(f"unknown event kind {item!r}{suggest(text, known.values())}")
            out.append(known[text.lower()])
        return out

    @field_validator("do", mode="before")
    @classmethod
    def _actions(cls, value: object) -> object:
        if not isinstance(value, list):
            return value
        actions, problems = [], []
        for position, item in enumerate(value):
            if not isinstance(item, Mapping) or len(item) != 1:
                problems.append(f"do[{position}] must be a mapping with one action, e.g. {{notify: {{...}}}}")
                continue
            ((kind, params),) = item.items()
            if kind not in PARAMS:
                suggestion = suggest(str(kind), [k.value for k in PARAMS])
                problems.append(f"do[{position}]: unknown action {kind!r}{suggestion}")
                continue
            model = PARAMS[ActionKind(kind)]
            try:
                actions.append({"kind": kind, "params": model.model_validate(params or {})})
            except ValidationError as exc:
                problems.extend(_describe(e, model, f"do[{position}].{kind}") for e in exc.errors())
        if problems:  # one line per problem: every error is listed, not just the first
            raise ValueError("\n".join(problems))
        return actions

    @model_validator(mode="after")
    def _paths(self) -> Rule:
        for where, paths in (("throttle.group_by", self.throttle.group_by if self.throttle else []),
                             ("once_per", self.once_per or [])):
            for path in paths:
                if not re.fullmatch(r"[A-Za-z_][\w.-]*", path):
                    raise ValueError(f"{where}: {path!r} is not a dotted path like monitor.name")
        ids: set[str] = set()
        for position, action in enumerate(self.do):
            condition = action.params.if_
            root = condition.removeprefix("not ").strip().split(".")[0] if condition else None
            if root is not None and root not in ids and root not in CONTEXT_ROOTS:
                raise ValueError(
                    f"do[{position}].{action.kind.value}.if: {root!r} is neither an earlier action's id "
                    f"({', '.join(sorted(ids)) or 'none'}) nor part of the event ({', '.join(CONTEXT_ROOTS)})"
                )
            if action.params.id:
                ids.add(action.params.id)
        return self


class QuarantineNotice(_Strict):
    """Who is told when an event is quarantined (the reason and how to redrive it)."""

    channels: list[str] = Field(min_length=1)


class RulesFile(_Strict):
    version: Literal[1] = 1
    allowed_workspaces: list[str] = Field(min_length=1)
    channels: dict[str, Channel] = Field(default_factory=dict)
    on_quarantine: QuarantineNotice | None = None
    rules: list[Rule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _notice_channels(self) -> RulesFile:
        for name in self.on_quarantine.channels if self.on_quarantine else []:
            if name not in self.channels:
                raise ValueError(
                    f"on_quarantine.channels: unknown channel {name!r}{suggest(name, self.channels)}"
                    " (declare it under channels:)"
                )
        return self

    @field_validator("allowed_workspaces", mode="before")
    @classmethod
    def _from_setting(cls, value: object) -> object:
        return resolve_allowed(value)

    @field_validator("allowed_workspaces")
    @classmethod
    def _workspace_ids(cls, values: list[str]) -> list[str]:
        for value in values:
            if Workspace.parse(value) is None:
                raise ValueError(
                    f"{value!r} is not a workspace resource id "
                    "(/subscriptions/SUB/resourceGroups/RG/providers/Microsoft.MachineLearningServices/workspaces/WS)"
                )
        return values


@dataclass(frozen=True)
class Rules:
    """A validated rules file plus where it came from (relative paths such as ``job_yaml`` resolve against it)."""

    spec: RulesFile
    path: Path | None
    #: Where each value stands in the file (for ``rules check``); None for rules not read from YAML text.
    document: Document | None = None

    @property
    def base_dir(self) -> Path:
        return self.path.parent if self.path else Path.cwd()

    def allows(self, event: AzureMLEvent) -> bool:
        return event.source.strip().lower() in self._allowed

    def candidates(self, event: AzureMLEvent) -> tuple[Rule, ...]:
        """The enabled rules whose ``on`` takes this event's kind, in file order: the only ones ``evaluate`` can
        match, so the engine evaluates one or two rules an event instead of every rule in the file."""
        by_type = self._candidates
        found = by_type.get(type(event))
        if found is None:
            found = by_type[type(event)] = tuple(
                rule for rule in self.spec.rules if rule.enabled and event.kinds.intersection(rule.on)
            )
        return found

    @cached_property
    def _allowed(self) -> frozenset[str]:
        return frozenset(ws.lower() for ws in self.spec.allowed_workspaces)

    @cached_property
    def _candidates(self) -> dict[type[AzureMLEvent], tuple[Rule, ...]]:
        """Filled per event class (``kinds`` is the class's): a loaded rules file never changes."""
        return {}


def suggest(value: str, candidates: Any) -> str:
    """`` — did you mean 'x'?`` for the closest candidate, or nothing."""
    close = difflib.get_close_matches(value, list(candidates), n=1, cutoff=0.6)
    return f" — did you mean {close[0]!r}?" if close else ""


def _describe(error: Mapping[str, Any], model: type[BaseModel], prefix: str = "") -> str:
    """One pydantic error as ``prefix.field: problem (got value) — did you mean ...``."""
    loc = [str(p) for p in error["loc"]]
    where = ".".join([prefix, *loc] if prefix else loc)
    message = str(error["msg"]).removeprefix("Value error, ")
    got = error.get("input")
    if not loc:  # a whole-model validator: each line of its message says where itself, or is about the whole
        return "\n".join(
            f"{prefix}.{line}" if prefix and message_path(line) else f"{prefix}: {line}" if prefix else line
            for line in message.split("\n")
        )
    if error["type"] == "extra_forbidden":
        return f"{where}: unknown field{suggest(loc[-1], _field_names(model, loc[:-1]))}"
    if error["type"] == "missing":
        return f"{where}: is required"
    if message.startswith(f"{where}["):  # our own validators already say where (do[2].notify...)
        return message
    # A value given for a ``*_setting`` field may be a pasted secret: never echo it.
    secret = bool(loc) and loc[-1].endswith("_setting")
    shown = "" if secret or isinstance(got, Mapping | list) or repr(got) in message else f" (got {got!r})"
    return f"{where}: {message}{shown}"


def _field_names(model: type[BaseModel], loc: list[str]) -> list[str]:
    """The field names valid at ``loc`` inside ``model``, for typo suggestions."""
    current: Any = model
    for part in loc:
        if part.isdigit() or not (isinstance(current, type) and issubclass(current, BaseModel)):
            continue
        info = current.model_fields.get(part)
        if info is None:
            return []
        current = _model_in(info.annotation)
    return list(current.model_fields) if isinstance(current, type) and issubclass(current, BaseModel) else []


def _model_in(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def parse_rules(
    document: object, source: str, path: Path | None = None, positions: Document | None = None
) -> Rules:
    """Validate a parsed rules document; raise ``RulesError`` listing every problem, rule by rule.

    With ``positions`` (the document as read from YAML) every problem starts with ``file:line:column``.
    """
    if not isinstance(document, Mapping):
        raise RulesError(source, ["the rules file must be a mapping with allowed_workspaces and rules"])
    errors: list[str] = []

    def problem(base: tuple[str | int, ...], label: str, message: str) -> None:
        at = positions.locate((*base, *message_path(message)), key=True) if positions else None
        where = f"{source}:{at}: error: " if at else ""
        errors.append(f"{where}{label}{message}")

    top = {k: v for k, v in document.items() if k != "rules"}
    raw_rules = document.get("rules") or []
    if not isinstance(raw_rules, list):
        problem((), "", f"rules: must be a list (got {type(raw_rules).__name__})")
        raw_rules = []
    try:
        spec = RulesFile.model_validate({**top, "rules": []})
    except ValidationError as exc:
        for e in exc.errors():
            problem((), "", _describe(e, RulesFile))
        spec = None

    rules: list[Rule] = []
    seen: set[str] = set()
    for position, raw in enumerate(raw_rules):
        named = isinstance(raw, Mapping) and raw.get("name")
        label = f"rule {raw.get('name')!r}: " if named else f"rules[{position}]: "
        try:
            rule = Rule.model_validate(raw)
        except ValidationError as exc:
            for e in exc.errors():
                for line in _describe(e, Rule).split("\n"):
                    problem(("rules", position), label, line)
            continue
        if rule.name in seen:
            problem(("rules", position), label, "name: is used by another rule; names must be unique")
        seen.add(rule.name)
        if spec is not None:
            for line in _unknown_channels(rule, spec):
                problem(("rules", position), label, line)
        rules.append(rule)
    if errors or spec is None:
        raise RulesError(source, errors)
    return Rules(spec=spec.model_copy(update={"rules": rules}), path=path, document=positions)


def message_path(message: str) -> tuple[str | int, ...]:
    """``do[2].notify.channels: unknown channel`` → ``("do", 2, "notify", "channels")``; () without such a prefix."""
    prefix, colon, _ = message.partition(": ")
    if not colon or not prefix or " " in prefix:
        return ()
    return dotted_path(prefix)


def dotted_path(text: str) -> tuple[str | int, ...]:
    """``do[2].notify.channels`` → ``("do", 2, "notify", "channels")``."""
    pieces = text.replace("[", ".").replace("]", "").split(".")
    return tuple(int(piece) if piece.isdigit() else piece for piece in pieces if piece)


def _unknown_channels(rule: Rule, spec: RulesFile) -> list[str]:
    problems = []
    for position, action in enumerate(rule.do):
        for name in getattr(action.params, "channels", []):
            if name not in spec.channels:
                problems.append(
                    f"do[{position}].notify.channels: unknown channel {name!r}{suggest(name, spec.channels)}"
                    f" (declare it under channels:)"
                )
    return problems


def load_rules(path: Path) -> Rules:
    """Read and validate a rules file; errors name the file. A missing or unreadable file is ``RulesUnreadable``."""
    try:
        with path.open("rb") as handle:  # at most one byte past the limit: a huge file is refused, not read
            raw = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        raise RulesUnreadable(str(path), [f"cannot read the rules file: {exc.strerror or exc}"]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RulesError(str(path), [f"{path}: not UTF-8 text (byte {exc.start})"]) from None
    return read_rules(text, str(path), path)


def read_rules(text: str, source: str, path: Path | None = None) -> Rules:
    """Parse and validate rules YAML text; ``source`` names it in errors (``source:line:column: ...``)."""
    try:
        document = load_yaml(text)
    except YamlProblem as exc:
        where = f"{source}:{exc.position}" if exc.position else source
        raise RulesError(source, [f"{where}: error: {exc.message}"]) from None
    return parse_rules(document.data, source, path, document)


@dataclass(frozen=True)
class Verdict:
    """Whether one rule matches one event, and if not, the first criterion that failed."""

    rule: Rule
    matched: bool
    reason: str


def evaluate(rule: Rule, event: AzureMLEvent, context: Mapping[str, Any] | None = None) -> Verdict:
    """Check a rule against an event; the reason names the first failing criterion and the event's value.

    ``context`` is ``event.context()``, passed in when the caller already has it (it is built once per event).
    """
    if not rule.enabled:
        return Verdict(rule, False, "rule is disabled")
    if not event.kinds.intersection(rule.on):
        kinds = ", ".join(k.value for k in rule.on)
        return Verdict(rule, False, f"on: event is {event.kind.value}, rule wants {kinds}")
    failure = _first_failure(rule.when, event, context if context is not None else event.context())
    return Verdict(rule, failure is None, failure or "all criteria hold")


def _first_failure(when: When, event: AzureMLEvent, ctx: Mapping[str, Any]) -> str | None:
    model_name = str(ctx.get("model", {}).get("name", ""))
    run = ctx.get("run", {})
    monitor = ctx.get("monitor", {})
    if when.model_name is not None and not fnmatch.fnmatchcase(model_name, when.model_name):
        return f"when.model_name: {model_name!r} does not match {when.model_name!r}"
    if when.model_name_regex is not None and not re.fullmatch(when.model_name_regex, model_name):
        return f"when.model_name_regex: {model_name!r} does not match /{when.model_name_regex}/"
    if when.tags is not None:
        tags = event.tags
        for key, expected in when.tags.equals.items():
            if tags.get(key) != expected:
                return f"when.tags.equals: tag {key!r} is {tags.get(key)!r}, not {expected!r}"
        for key in when.tags.exists:
            if key not in tags:
                return f"when.tags.exists: tag {key!r} is absent"
        for key in when.tags.absent:
            if key in tags:
                return f"when.tags.absent: tag {key!r} is present ({tags[key]!r})"
    if when.run_status is not None:
        status = str(run.get("status", ""))
        if status.lower() not in {s.lower() for s in when.run_status}:
            return f"when.run_status: status is {status or 'none'!r}, not one of {when.run_status}"
    checks = (
        ("experiment_name", when.experiment_name, str(run.get("experiment_name", ""))),
        ("run_type", when.run_type, str(run.get("type", ""))),
        ("monitor_name", when.monitor_name, str(monitor.get("name", ""))),
        ("signal_name", when.signal_name, str(monitor.get("signal", ""))),
    )
    for name, pattern, actual in checks:
        if pattern is not None and not fnmatch.fnmatchcase(actual, pattern):
            return f"when.{name}: {actual!r} does not match {pattern!r}"
    if when.drift_coefficient_above is not None:
        coefficient = ctx.get("drift", {}).get("coefficient")
        # A v2 monitor signal has no coefficient: the breach tag itself says a threshold was crossed.
        if coefficient is None:
            if event.kind is not EventKind.MODEL_MONITOR_SIGNAL:
                return "when.drift_coefficient_above: the event carries no drift coefficient"
        elif coefficient <= when.drift_coefficient_above:
            return f"when.drift_coefficient_above: {coefficient} is not above {when.drift_coefficient_above}"
    return None


def throttle_key(rule: Rule, event: AzureMLEvent, context: Mapping[str, Any] | None = None) -> str | None:
    """``rule|value1|value2`` for the rule's ``group_by`` paths; None when the rule is not throttled.

    ``context`` is ``event.context()`` when the caller already has it, as for ``evaluate``.
    """
    if rule.throttle is None:
        return None
    return "|".join([rule.name, *_values(rule.throttle.group_by, context or event.context())])


def once_key(rule: Rule, event: AzureMLEvent, context: Mapping[str, Any] | None = None) -> str | None:
    """``once|rule|value1|value2`` for the rule's ``once_per`` paths; None when the rule has none."""
    if not rule.once_per:
        return None
    return "|".join(["once", rule.name, ",".join(_values(rule.once_per, context or event.context()))])


def _values(paths: list[str], ctx: Mapping[str, Any]) -> list[str]:
    values = []
    for path in paths:
        try:
            values.append(str(templates.lookup(ctx, path)))
        except KeyError:
            values.append("")
    return values
