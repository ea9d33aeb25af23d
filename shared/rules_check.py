"""The static checks of ``mlreactor rules check``: what loads fine but would break, or misbehave, at run time.

Loading (``shared/reactions.py``) already refuses what cannot be a rules file (unknown fields, bad durations,
malformed templates, duplicate keys). These checks read a loaded file as the engine will run it:

- every template path and ``if:`` path against what each of the rule's event kinds provides
  (``shared/event_fields.py``) and what each earlier action returns (``RESULT_FIELDS`` in ``shared/actions.py``);
  a default template counts too (``tag_model`` in a RunCompleted rule has no ``{{ model.name }}``);
- ``throttle.group_by`` and ``once_per`` paths (a missing one is empty: every event would share one window);
- ``when`` criteria on fields the rule's event kinds do not have (they would never hold);
- files a rule names: ``job_yaml`` and the local component files its jobs name, relative to the rules file.

Warnings (``--strict`` makes them fail): a legacy Office 365 connector URL, a drift or run-failure ``notify``
that is neither throttled nor digested, a ``publish_event`` that follows the action it reports on without an ``if``.
Each finding has the rule, the field, the bad value, a did-you-mean where one is close, and the line and column.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from shared import templates
from shared.actions import RESULT_FIELDS, ActionKind, NotifyParams, PublishEventParams, RunPipelineParams
from shared.actions import strings_at as template_strings
from shared.event_fields import has_path, paths_for
from shared.events import EventKind
from shared.reactions import Action, Rule, Rules, dotted_path, suggest
from shared.rules_yaml import Position, YamlProblem
from shared.rules_yaml import load as load_yaml

Severity = Literal["error", "warning"]
DocPath = tuple[str | int, ...]

#: The context path each ``when`` criterion reads (``drift_coefficient_above`` also holds for a v2 monitor signal,
#: whose breach is the threshold: see ``reactions._first_failure``).
WHEN_READS: dict[str, str] = {
    "model_name": "model.name",
    "model_name_regex": "model.name",
    "run_status": "run.status",
    "experiment_name": "run.experiment_name",
    "run_type": "run.type",
    "monitor_name": "monitor.name",
    "signal_name": "monitor.signal",
    "drift_coefficient_above": "drift.coefficient",
}
_DRIFT = {EventKind.DATASET_DRIFT_DETECTED, EventKind.MODEL_MONITOR_SIGNAL}
#: Actions whose success is news: a ``publish_event`` after one of them reports that it happened.
_REPORTED = {ActionKind.RUN_PIPELINE, ActionKind.QUEUE_RELEASE}
#: Incoming webhooks of Office 365 connectors, retired in Teams (devblogs.microsoft.com/microsoft365dev/
#: retirement-of-office-365-connectors-within-microsoft-teams/): a Workflows webhook replaces them.
_LEGACY_TEAMS = (".webhook.office.com/webhookb2/", "outlook.office.com/webhook/", "outlook.office365.com/webhook/")


@dataclass(frozen=True)
class Finding:
    severity: Severity
    rule: str | None
    field: str
    message: str
    position: Position | None

    def line(self, source: str) -> str:
        where = f"{source}:{self.position}" if self.position else source
        rule = f"rule {self.rule!r}: " if self.rule else ""
        return f"{where}: {self.severity}: {rule}{self.field}: {self.message}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "severity": self.severity, "rule": self.rule, "field": self.field, "message": self.message,
            "line": self.position.line if self.position else None,
            "column": self.position.column if self.position else None,
        }


def check(rules: Rules, environ: Mapping[str, str] | None = None) -> list[Finding]:
    """Every finding of every rule, in file order. ``environ`` holds the settings channels name (for the URL check;
    the URL itself is never shown)."""
    findings = _channels(rules, os.environ if environ is None else environ)
    for position, rule in enumerate(rules.spec.rules):
        findings.extend(_RuleCheck(rules, rule, ("rules", position)).run())
    return sorted(findings, key=lambda f: (f.position.line, f.position.column) if f.position else (0, 0))


def _channels(rules: Rules, environ: Mapping[str, str]) -> list[Finding]:
    found = []
    for name, channel in rules.spec.channels.items():
        setting = getattr(channel, "url_setting", None)
        value = environ.get(setting or "", "")
        if setting and any(pattern in value.lower() for pattern in _LEGACY_TEAMS):
            where = rules.document.locate(("channels", name, "url_setting"), key=True) if rules.document else None
            found.append(Finding(
                "warning", None, f"channels.{name}.url_setting",
                f"{setting} holds a legacy Office 365 connector URL (…webhook.office.com/webhookb2/…); Microsoft "
                "retired these connectors in Teams: create a Workflows webhook and put its URL in the setting",
                where,
            ))
    return found


class _RuleCheck:
    def __init__(self, rules: Rules, rule: Rule, base: DocPath) -> None:
        self.rules, self.rule, self.base = rules, rule, base
        self.kinds = list(rule.on)
        self.findings: list[Finding] = []

    def run(self) -> list[Finding]:
        self._when()
        self._group_paths()
        ids_later = {a.params.id: i for i, a in enumerate(self.rule.do) if a.params.id}
        steps: dict[str, ActionKind] = {}
        for index, action in enumerate(self.rule.do):
            self._action(index, action, steps, ids_later)
            if action.params.id:
                steps[action.params.id] = action.kind
        self._notify_bounded()
        self._publish_guarded()
        return self.findings

    def add(self, severity: Severity, field: str, doc_path: DocPath, message: str) -> None:
        position = self.rules.document.locate((*self.base, *doc_path), key=True) if self.rules.document else None
        self.findings.append(Finding(severity, self.rule.name, field, message, position))

    def missing(self, path: str) -> list[EventKind]:
        return [kind for kind in self.kinds if not has_path(paths_for(kind), path)]

    def names(self) -> str:
        return ", ".join(k.value for k in self.kinds)

    # when, group_by, once_per -------------------------------------------------------------------------------
    def _when(self) -> None:
        for criterion, path in WHEN_READS.items():
            if getattr(self.rule.when, criterion) is None:
                continue
            lacking = [k for k in self.missing(path)
                       if not (criterion == "drift_coefficient_above" and k is EventKind.MODEL_MONITOR_SIGNAL)]
            if lacking:
                kinds = ", ".join(k.value for k in lacking)
                self.add("error", f"when.{criterion}", ("when", criterion),
                         f"{kinds} events have no {path}: this criterion never holds for them")

    def _group_paths(self) -> None:
        throttle = self.rule.throttle.group_by if self.rule.throttle else []
        for where, doc, paths in (("throttle.group_by", ("throttle", "group_by"), throttle),
                                  ("once_per", ("once_per",), self.rule.once_per or [])):
            for i, path in enumerate(paths):
                problem = self._context_path(path, optional=False, steps={})
                if problem:
                    self.add("error", f"{where}[{i}]", (*doc, i),
                             f"{path!r}: {problem} (a missing value is empty: every event would share one window)")

    # actions ------------------------------------------------------------------------------------------------
    def _action(self, index: int, action: Action, steps: Mapping[str, ActionKind], later: Mapping[str, int]) -> None:
        kind = action.kind.value
        given = action.params.model_fields_set
        condition = action.params.if_
        if condition:
            path = condition.strip().removeprefix("not ").strip()
            problem = self._path(path, optional=True, steps=steps, later=later, index=index)
            if problem:
                self.add("error", f"do[{index}].{kind}.if", ("do", index, kind, "if"), f"{condition!r}: {problem}")
        dumped = action.params.model_dump(by_alias=True, exclude={"id", "if_"})
        for where, text in template_strings(dumped, ""):
            field = where.split(".", 1)[0].split("[", 1)[0]
            for placeholder in templates.placeholders(text):
                problem = self._path(placeholder.path, optional=placeholder.filter == "optional", steps=steps,
                                     later=later, index=index)
                if not problem:
                    continue
                if field in given:
                    self.add("error", f"do[{index}].{kind}.{where}", ("do", index, kind, *dotted_path(where)),
                             f"{{{{ {placeholder.path} }}}}: {problem}")
                else:
                    lacking = ", ".join(k.value for k in self.missing(placeholder.path)) or self.names()
                    self.add("error", f"do[{index}].{kind}.{where}", ("do", index, kind),
                             f"not set, and its default {text!r} needs {placeholder.path}, which {lacking} events "
                             f"do not have: set {field}")
        if isinstance(action.params, RunPipelineParams):
            self._files(index, action.params)

    def _path(self, path: str, *, optional: bool, steps: Mapping[str, ActionKind], later: Mapping[str, int],
              index: int) -> str | None:
        root, _, rest = path.partition(".")
        if root in steps:
            fields = RESULT_FIELDS[steps[root]]
            if not rest or has_path(fields, rest):
                return None
            candidates = [f"{root}.{f.removesuffix('.*')}" for f in fields]
            return f"the result of {steps[root].value} ({root}) has no {rest!r}{suggest(path, candidates)}"
        if root in later and later[root] >= index:
            return f"{root!r} is the result of do[{later[root]}], which runs later: only earlier results can be used"
        return self._context_path(path, optional=optional, steps=steps)

    def _context_path(self, path: str, *, optional: bool, steps: Mapping[str, ActionKind]) -> str | None:
        lacking = self.missing(path)
        if not lacking or (optional and len(lacking) < len(self.kinds)):
            return None
        candidates = sorted({p.removesuffix(".*") for k in self.kinds for p in paths_for(k)} |
                            {f"{i}.{f.removesuffix('.*')}" for i, kind in steps.items() for f in RESULT_FIELDS[kind]})
        if len(lacking) < len(self.kinds):
            kinds = ", ".join(k.value for k in lacking)
            return (f"{kinds} events have no {path} (the rule is on {self.names()}): add '| optional' or "
                    "split the rule")
        return f"{self.names()} events have no {path}{suggest(path, candidates)}"

    def _files(self, index: int, params: RunPipelineParams) -> None:
        job = params.job_yaml
        if not job or "{{" in job:
            return
        root = self.rules.base_dir.resolve()
        target = (root / job).resolve()
        doc = ("do", index, "run_pipeline", "job_yaml")
        field = f"do[{index}].run_pipeline.job_yaml"
        if not target.is_relative_to(root):
            self.add("error", field, doc, f"{job!r} leaves the rules file's folder {root}")
            return
        if not target.is_file():
            near = [str(p.relative_to(root)) for p in target.parent.glob("*.y*ml")] if target.parent.is_dir() else []
            self.add("error", field, doc, f"{job!r} does not exist (relative to {root}){suggest(job, near)}")
            return
        for name, component in _local_components(target):
            path = (target.parent / component.removeprefix("file:")).resolve()
            if not path.is_file():
                self.add("error", field, doc,
                         f"{job!r}: jobs.{name}.component {component!r} does not exist (relative to {target.parent})")

    # warnings -----------------------------------------------------------------------------------------------
    def _notify_bounded(self) -> None:
        failure = self.rule.when.run_status is not None and any(
            s.lower() in {"failed", "canceled"} for s in self.rule.when.run_status
        )
        if not (failure or _DRIFT & set(self.kinds)):
            return
        if self.rule.throttle is not None and not self.rule.throttle.group_by:
            return  # one firing per window at all: bounded
        for index, action in enumerate(self.rule.do):
            if isinstance(action.params, NotifyParams) and not action.params.throttle_key:
                what = "drift (16,000 monitors → 16,000 messages)" if _DRIFT & set(self.kinds) else "run failure"
                self.add("warning", f"do[{index}].notify", ("do", index, "notify"),
                         f"one message per {what}: set throttle_key (e.g. \"{{{{ workspace.name }}}}\") and "
                         "throttle_window to fold repeats into a digest")

    def _publish_guarded(self) -> None:
        for index, action in enumerate(self.rule.do):
            if not isinstance(action.params, PublishEventParams) or action.params.if_:
                continue
            used = {p.path.split(".", 1)[0] for _, s in template_strings(action.params.model_dump(), "")
                    for p in templates.placeholders(s)}
            for before, earlier in enumerate(self.rule.do[:index]):
                if earlier.kind in _REPORTED or (earlier.params.id and earlier.params.id in used):
                    hint = (f"if: {earlier.params.id}.{RESULT_FIELDS[earlier.kind][0].removesuffix('.*')}"
                            if earlier.params.id else f"give do[{before}] an id and add if: <id>.<field>")
                    self.add("warning", f"do[{index}].publish_event", ("do", index, "publish_event"),
                             f"{action.params.type} follows do[{before}].{earlier.kind.value} without an if: it is "
                             f"published even when that action did not happen ({hint})")
                    break


def _local_components(job_yaml: Path) -> Iterable[tuple[str, str]]:
    """``jobs.<name>.component`` values of a pipeline YAML that name a local file (not ``azureml:`` assets)."""
    try:
        document = load_yaml(job_yaml.read_text(encoding="utf-8")).data
    except (OSError, UnicodeDecodeError, YamlProblem):
        return []
    jobs = document.get("jobs") if isinstance(document, Mapping) else None
    found = []
    for name, job in (jobs or {}).items() if isinstance(jobs, Mapping) else ():
        component = job.get("component") if isinstance(job, Mapping) else None
        if isinstance(component, str) and not component.startswith("azureml:") and (
            component.startswith(("./", "../", "file:")) or component.endswith((".yml", ".yaml"))
        ):
            found.append((str(name), component))
    return found
