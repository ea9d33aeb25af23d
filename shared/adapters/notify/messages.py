"""What Ops reads: one ``Message`` per situation, composed from the event, the action's parameters and a layout.

A layout is plain text with sandboxed placeholders (``shared.templates``): a title, a sentence, facts and links. It
never contains markup — the renderers (``render.py``) add markup and escape every value for their format, so a run
named ``<script>`` or ``*bold*`` reaches Teams, Slack and e-mail as text. Built-in layouts are below; a file
``<kind>.yaml`` in ``MLREACTOR_NOTIFY_TEMPLATES_DIR`` overrides any of their keys::

    title: "{{ run.status }} — {{ run.experiment_name }}"
    facts: {Owner: "{{ run.tags.owner }}", Type: ""}     # a fact rendered empty is left out

A placeholder the event does not have renders empty (the fact is dropped) rather than failing the notification;
a malformed override file stops the adapter from starting (``ConfigError``), like a malformed rules file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml

from shared import templates
from shared.actions import NotifyParams, PlannedAction
from shared.errors import ConfigError
from shared.gate import metrics_from_tags

STUDIO = "https://ml.azure.com"


@dataclass(frozen=True)
class Link:
    label: str
    url: str


@dataclass(frozen=True)
class Table:
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Message:
    """Plain text parts of one notification; ``severity`` is good | warning | attention | accent."""

    kind: str
    severity: str
    title: str
    text: str
    facts: tuple[tuple[str, str], ...] = ()
    links: tuple[Link, ...] = ()
    table: Table | None = None
    digest: str = ""
    footer: str = ""
    event: Mapping[str, str] = field(default_factory=dict)
    correlation_id: str = ""
    rule: str = ""


@dataclass(frozen=True)
class Layout:
    title: str
    text: str
    severity: str = "accent"
    facts: tuple[tuple[str, str], ...] = ()
    links: tuple[tuple[str, str], ...] = ()
    #: What repeats are called in a digest: "and 14 more <noun>".
    noun: str = "notifications"


_RUN_FACTS = (
    ("Workspace", "{{ workspace.name }}"),
    ("Experiment", "{{ run.experiment_name }}"),
    ("Run", "{{ run.id }}"),
    ("Type", "{{ run.type }}"),
    ("Status", "{{ run.status }}"),
)

LAYOUTS: dict[str, Layout] = {
    "generic": Layout(
        title="{{ event.kind }}: {{ event.subject }}",
        text="Azure ML event {{ event.type }} in workspace {{ workspace.name }}.",
        facts=(("Workspace", "{{ workspace.name }}"), ("Event", "{{ event.type }}"),
               ("Subject", "{{ event.subject }}")),
        links=(("Open in Azure ML studio", "{{ notify.run_url }}"),),
    ),
    "run_failed": Layout(
        title="Run {{ run.status | lower }}: {{ run.experiment_name }} / {{ run.id }}",
        text="Run {{ run.id }} of experiment {{ run.experiment_name }} ended with status {{ run.status }}.",
        severity="{{ notify.severity }}",
        facts=(*_RUN_FACTS, ("Duration", "{{ notify.duration }}"), ("Error", "{{ notify.error }}"),
               ("Event time", "{{ event.time }}")),
        links=(("Open run in Azure ML studio", "{{ notify.run_url }}"),),
        noun="failed or canceled runs",
    ),
    "chain_failed": Layout(
        title="Chain run {{ run.status | lower }}: {{ run.experiment_name }} / {{ run.id }}",
        text="Run {{ run.id }} of the retrain → test → release chain ended with status {{ run.status }}. The chain "
        "stops here; a model under test is tagged rejected.",
        severity="{{ notify.severity }}",
        facts=(("Step", "{{ run.tags.mlreactor.purpose }}"), ("Model", "{{ notify.model }}"), *_RUN_FACTS,
               ("Duration", "{{ notify.duration }}"), ("Error", "{{ notify.error }}"),
               ("Correlation id", "{{ correlation_id }}")),
        links=(("Open run in Azure ML studio", "{{ notify.run_url }}"), ("Open model", "{{ notify.model_url }}")),
        noun="chain failures",
    ),
    "drift_detected": Layout(
        title="Drift detected by {{ monitor.name }}: retraining started",
        text="Monitor {{ monitor.name }} reported drift in workspace {{ workspace.name }}; rule {{ notify.rule }} "
        "launched the retraining pipeline.",
        severity="warning",
        facts=(("Monitor", "{{ monitor.name }}"), ("Signal", "{{ monitor.signal }}"),
               ("Drift coefficient", "{{ drift.coefficient }}"), ("Breach", "{{ monitor.message }}"),
               ("Monitoring run", "{{ notify.run_id }}"), ("Workspace", "{{ workspace.name }}")),
        links=(("Open monitoring run", "{{ notify.run_url }}"),),
        noun="drift alerts",
    ),
    "offline_test": Layout(
        title="Offline test {{ notify.verdict }}: {{ notify.model }}",
        text="The offline test of {{ notify.model }} {{ notify.verdict }} the quality gate.",
        severity="{{ notify.severity }}",
        facts=(("Model", "{{ notify.model }}"), ("Verdict", "{{ notify.verdict }}"),
               ("Champion", "{{ notify.champion }}"), ("Notes", "{{ notify.gate_notes }}"),
               ("Test run", "{{ run.id }}"), ("Experiment", "{{ run.experiment_name }}")),
        links=(("Open test run", "{{ notify.run_url }}"), ("Open model", "{{ notify.model_url }}")),
        noun="offline test results",
    ),
    "release_queued": Layout(
        title="Release of {{ notify.model }} queued: awaiting approval",
        text="A release of {{ notify.model }} was queued. Production waits for a person to approve it in "
        "Azure DevOps; mlreactor never approves.",
        severity="accent",
        facts=(("Model", "{{ notify.model }}"), ("Release", "{{ notify.release_name }}"),
               ("Environment", "{{ notify.release_environment }}"), ("Status", "{{ notify.release_status }}"),
               ("Tested by run", "{{ run.id }}"), ("Correlation id", "{{ correlation_id }}")),
        links=(("Review the pending approval", "{{ notify.release_url }}"), ("Open test run", "{{ notify.run_url }}"),
               ("Open model", "{{ notify.model_url }}")),
        noun="queued releases",
    ),
    "model_deployed": Layout(
        title="{{ notify.model }} deployed to {{ deployment.service_name }}: new champion",
        text="{{ deployment.service_name }} now serves {{ notify.models }}; {{ notify.model }} is the new champion.",
        severity="good",
        facts=(("Service", "{{ deployment.service_name }}"), ("Compute", "{{ deployment.compute_type }}"),
               ("Models", "{{ notify.models }}"), ("Workspace", "{{ workspace.name }}")),
        links=(("Open model", "{{ notify.model_url }}"),),
        noun="deployments",
    ),
    "event_quarantined": Layout(
        title="Event quarantined: {{ event.kind }} {{ event.subject }}",
        text="mlreactor stopped acting on event {{ event.id }} and stored it for a person. After fixing the cause, "
        "redrive it with: mlreactor deadletter redrive --quarantined --event-id {{ event.id }}",
        severity="attention",
        facts=(("Event", "{{ event.id }}"), ("Type", "{{ event.type }}"), ("Subject", "{{ event.subject }}"),
               ("Workspace", "{{ workspace.name }}"), ("Correlation id", "{{ correlation_id }}")),
        noun="quarantined events",
    ),
}

_PLACEHOLDER = re.compile(r"\{\{.*?\}\}")
_UNSAFE_IN_URL = re.compile(r"[\s<>\"'`]")
_VERDICTS = {"passed": "passed", "challenger": "passed", "failed": "failed", "rejected": "failed"}
_SEVERITIES = {"good", "warning", "attention", "accent"}


def load_layouts(directory: Path | None) -> dict[str, Layout]:
    """Built-in layouts with the overrides found in ``directory`` (read once, when the adapter is built)."""
    layouts = dict(LAYOUTS)
    if directory is None:
        return layouts
    for kind, base in LAYOUTS.items():
        path = directory / f"{kind}.yaml"
        if path.is_file():
            layouts[kind] = _override(base, path)
    return layouts


def _override(base: Layout, path: Path) -> Layout:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"MLREACTOR_NOTIFY_TEMPLATES_DIR: {path}: cannot read it: {exc}") from None
    allowed = {"title", "text", "severity", "facts", "links", "noun"}
    if not isinstance(doc, Mapping) or set(doc) - allowed:
        raise ConfigError(f"MLREACTOR_NOTIFY_TEMPLATES_DIR: {path}: a mapping with only {', '.join(sorted(allowed))}")
    problems = [p for s in _strings(doc) for p in templates.check(s)]
    if problems:
        raise ConfigError(f"MLREACTOR_NOTIFY_TEMPLATES_DIR: {path}: {'; '.join(problems)}")
    changes: dict[str, Any] = {k: str(v) for k, v in doc.items() if k in {"title", "text", "severity", "noun"}}
    for key in ("facts", "links"):
        if key in doc:
            if not isinstance(doc[key] or {}, Mapping):
                raise ConfigError(f"MLREACTOR_NOTIFY_TEMPLATES_DIR: {path}: {key} must be a mapping label: template")
            merged = dict(getattr(base, key))
            merged.update({str(k): str(v or "") for k, v in (doc[key] or {}).items()})
            changes[key] = tuple(merged.items())
    return replace(base, **changes)


def _strings(value: Any) -> list[str]:
    if isinstance(value, Mapping):
        return [s for k, v in value.items() for s in (str(k), *_strings(v))]
    return [value] if isinstance(value, str) else []


def compose(
    action: PlannedAction, layout: Layout, *, digest: int = 0, digest_key: str = "", window: str = ""
) -> Message:
    """The message for one notify action; ``digest`` counts repeats held back in the previous throttle window."""
    params = action.params
    assert isinstance(params, NotifyParams)
    ctx, gate = _context(action)

    def text(template: str) -> str:
        return _render(template, ctx)

    facts = {label: text(value) for label, value in layout.facts}
    facts.update(params.facts)  # already rendered at plan time
    # The rule's own links come first (the primary button): e.g. the pending approval of a queued release.
    links = dict(params.links)
    links.update({label: text(url) for label, url in layout.links if label not in params.links})
    severity = text(layout.severity)
    event = ctx["event"]
    return Message(
        kind=params.message,
        severity=severity if severity in _SEVERITIES else "accent",
        title=title(action, layout, ctx),
        text=params.text or text(layout.text),
        facts=tuple((k, v) for k, v in facts.items() if v.strip()),
        links=tuple(Link(k, v) for k, v in links.items() if _is_https(v)),
        table=_metrics_table(ctx, gate or None) if params.message == "offline_test" else None,
        digest=(
            f"Also: {digest} more {layout.noun} for {digest_key} were held back in the previous {window} window."
            if digest else ""
        ),
        footer=f"mlreactor · rule {action.rule} · correlation {action.correlation_id} · event {event['id']}",
        event={k: str(event[k]) for k in ("id", "type", "subject", "source", "time")},
        correlation_id=action.correlation_id,
        rule=action.rule,
    )


def title(action: PlannedAction, layout: Layout, ctx: Mapping[str, Any] | None = None) -> str:
    """The message's title alone (all a dry run shows of it), without building the rest of the message."""
    params = action.params
    assert isinstance(params, NotifyParams)
    return _one_line(params.title or _render(layout.title, ctx if ctx is not None else _context(action)[0]))


def _context(action: PlannedAction) -> tuple[dict[str, Any], Mapping[str, Any]]:
    """What a layout's templates see, and the quality gate's recorded verdict (empty if the rule has none)."""
    # Earlier results of the rule are visible as in parameter templates ({{ gate.summary }}, {{ release.url }}).
    ctx = {**action.event.context(), **action.steps}
    gate = _step(action.steps, "table", "passed")  # the quality gate's recorded verdict
    release = _step(action.steps, "url", "environment", "status")  # the queued release, awaiting approval
    ctx["notify"] = _extras(ctx, action.rule, gate, release)
    return ctx, gate


def _render(template: str, ctx: Mapping[str, Any]) -> str:
    """Each placeholder on its own: one the event lacks becomes empty, the rest of the text stays."""

    def one(match: re.Match[str]) -> str:
        try:
            value = templates.render(match.group(0), ctx)
        except templates.TemplateError:
            return ""
        return value if isinstance(value, str) else "" if value is None else str(value)

    return _PLACEHOLDER.sub(one, template)


def _one_line(value: str) -> str:
    return " ".join(value.split())


def _is_https(url: str) -> bool:
    """Buttons open only https:// links: an event value can never become a ``javascript:`` or http link."""
    return url.startswith("https://") and _UNSAFE_IN_URL.search(url) is None


def _step(steps: Mapping[str, Any], *keys: str) -> Mapping[str, Any]:
    """The first earlier result of the rule that has ``keys`` (whatever ``id`` the rule gave it), else empty."""
    return next((v for v in steps.values() if isinstance(v, Mapping) and all(k in v for k in keys)), {})


def _extras(
    ctx: Mapping[str, Any], rule: str, gate: Mapping[str, Any], release: Mapping[str, Any]
) -> dict[str, str]:
    """Derived values the layouts need: studio links, the model a run is about, duration, error, verdict."""
    ws = str(ctx["workspace"]["id"])
    run = ctx.get("run") or {}
    drift = ctx.get("drift") or {}
    tags: Mapping[str, str] = run.get("tags") or {}
    props: Mapping[str, str] = run.get("properties") or {}
    run_id = str(run.get("id") or drift.get("run_id") or "")
    model = ctx.get("model") or {}
    name = gate.get("model") or release.get("model") or model.get("name") or tags.get("mlreactor.model_name", "")
    version = (gate.get("version") or release.get("version") or model.get("version")
               or tags.get("mlreactor.model_version", ""))
    model_id = f"{name}:{version}" if name and version else str(name)
    if "passed" in gate:
        verdict = "passed" if gate["passed"] else "failed"
    else:
        verdict = (tags.get("mlreactor.verdict") or props.get("mlreactor.verdict") or "").lower()
    status = str(run.get("status", ""))
    deployed = ctx.get("deployment", {}).get("models", [])
    wsid = quote(ws, safe="/")
    return {
        "rule": rule,
        "run_id": run_id,
        "run_url": f"{STUDIO}/runs/{quote(run_id, safe='')}?wsid={wsid}" if run_id else "",
        "model": model_id,
        "models": ", ".join(m["id"] for m in deployed),
        "model_url": f"{STUDIO}/model/{quote(model_id, safe=':')}/details/overview?wsid={wsid}"
        if name and version else "",
        "verdict": _VERDICTS.get(verdict, "finished"),
        "severity": "attention" if status == "Failed" or verdict.startswith("fail") else
        "good" if verdict.startswith("pass") else "warning",
        "duration": _duration(props),
        "error": _error(tags, props),
        "champion": f"{name}:{gate['champion_version']}" if gate.get("champion_version") else "",
        "gate_notes": "; ".join(str(r) for r in gate.get("reasons", [])),
        "release_url": str(release.get("url") or ""),
        "release_name": str(release.get("name") or ""),
        "release_environment": str(release.get("environment") or ""),
        "release_status": str(release.get("status") or ""),
    }


def _duration(props: Mapping[str, str]) -> str:
    """Azure ML puts no times in run events; some runs carry start/end properties — use them when present."""
    lowered = {k.lower(): v for k, v in props.items()}
    try:
        start = datetime.fromisoformat(lowered.get("starttimeutc") or lowered.get("starttime") or "")
        end = datetime.fromisoformat(lowered.get("endtimeutc") or lowered.get("endtime") or "")
        if end < start:
            return ""
    except (ValueError, TypeError):  # absent, unparseable, or naive vs aware
        return ""
    seconds = int((end - start).total_seconds())
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h {rest // 60:02d}m {rest % 60:02d}s" if hours else f"{rest // 60}m {rest % 60:02d}s"


def _error(tags: Mapping[str, str], props: Mapping[str, str]) -> str:
    for source in (props, tags):
        for key, value in source.items():
            if "error" in key.lower() and value.strip():
                return value.strip()[:500]
    return ""


def _metrics_table(ctx: Mapping[str, Any], gate: Mapping[str, Any] | None) -> Table | None:
    """The gate's own table (metric, candidate, champion, check, result); without a gate, the run's metric tags."""
    if gate is not None and gate.get("table"):
        rows = tuple(
            (str(r["metric"]), _number(r.get("candidate")), _number(r.get("champion")), str(r["check"]),
             "pass" if r.get("passed") else "FAIL")
            for r in gate["table"]
        )
        return Table(("Metric", "Candidate", "Champion", "Check", "Result"), rows)
    run = ctx.get("run") or {}
    metrics = metrics_from_tags(run.get("tags") or {}, run.get("properties") or {})
    if not metrics:
        return None
    return Table(("Metric", "Candidate"), tuple((k, _number(v)) for k, v in sorted(metrics.items())))


def _number(value: object) -> str:
    return "" if value is None else f"{value:g}" if isinstance(value, float) else str(value)
