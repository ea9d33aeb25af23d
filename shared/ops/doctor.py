"""``mlreactor doctor``: what this configuration would do, and what in it would fail — before an event finds out.

A check is a small function of the ``Context`` (settings, rules, ledger, adapters as the Function App would build
them) that yields ``Finding``s; ``CHECKS`` lists them in the order they print. Adding a check is writing one
function and appending it to ``CHECKS``. A ``fail`` finding makes ``doctor`` exit 1.

Settings errors are explained here too (``settings_problems``): one line per bad setting, naming the environment
variable (``MLREACTOR_LEDGER``, not the field ``ledger``) and what it accepts — never the value of a secret.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import SecretStr, ValidationError

from shared.actions import ActionAdapter, ActionKind
from shared.adapters import build_adapters, describe
from shared.channels import Channel
from shared.clock import format_duration
from shared.errors import MlreactorError, RulesError
from shared.ledger import open_ledger
from shared.ledger.port import Ledger
from shared.ops.gates import check_release_gates
from shared.reactions import Rules, load_rules
from shared.settings import Settings, unresolved_key_vault_references
from shared.workspaces import check as check_workspaces

Status = Literal["ok", "info", "warn", "fail"]


@dataclass(frozen=True)
class Finding:
    check: str
    status: Status
    detail: str

    def as_dict(self) -> dict[str, str]:
        return {"check": self.check, "status": self.status, "detail": self.detail}


@dataclass
class Context:
    """What the checks look at; built once by ``examine``. Parts that could not be built are None, with why."""

    settings: Settings
    rules: Rules | None = None
    rules_error: str = ""
    ledger: Ledger | None = None
    ledger_error: str = ""
    adapters: dict[ActionKind, ActionAdapter] = field(default_factory=dict)


Check = Callable[[Context], Iterable[Finding]]


# settings errors -----------------------------------------------------------------------------------------------
def env_name(field_name: str) -> str:
    """The environment variable (app setting) that sets a ``Settings`` field."""
    info = Settings.model_fields.get(field_name)
    alias = info.validation_alias if info is not None else None
    return alias if isinstance(alias, str) else f"MLREACTOR_{field_name.upper()}"


_ACCEPTS = {
    "bool_parsing": "true or false", "bool_type": "true or false", "int_parsing": "a whole number",
    "float_parsing": "a number", "path_type": "a path", "timedelta_parsing": "a duration like 30m, 6h, 7d",
}


def settings_problems(error: ValidationError) -> list[str]:
    """``MLREACTOR_LEDGER='postgres': accepted values are 'sqlite' or 'tables'`` — one line per bad setting."""
    lines = []
    for problem in error.errors(include_url=False):
        loc = [str(part) for part in problem.get("loc", ())]
        message = str(problem.get("msg", "")).removeprefix("Value error, ")
        if not loc:  # a rule across settings: its message names them
            lines.append(message)
            continue
        name = env_name(loc[0])
        info = Settings.model_fields.get(loc[0])
        secret = info is not None and SecretStr in _types(info.annotation)
        shown = "" if secret else f"={problem.get('input')!r}"
        kind = str(problem.get("type", ""))
        if kind == "literal_error":
            message = f"accepted values are {problem.get('ctx', {}).get('expected', '')}"
        elif kind in _ACCEPTS:
            message = f"expected {_ACCEPTS[kind]}"
        lines.append(f"{name}{shown}: {message}")
    return lines


def _types(annotation: Any) -> set[Any]:
    args = get_args(annotation)
    return {annotation, *args} if args else {annotation}


# the checks ----------------------------------------------------------------------------------------------------
def effective_settings(ctx: Context) -> Iterator[Finding]:
    """Every setting as it is in effect: value, or only set/unset for secrets; ``(default)`` where not given."""
    given = ctx.settings.model_fields_set
    for name, info in Settings.model_fields.items():
        value = getattr(ctx.settings, name)
        if isinstance(value, SecretStr) or (value is None and SecretStr in _types(info.annotation)):
            shown = "set (secret)" if value is not None else "unset"
        elif isinstance(value, timedelta):
            shown = format_duration(value)
        else:
            shown = "unset" if value is None else str(value)
        yield Finding("setting", "info", f"{env_name(name)} = {shown}{'' if name in given else ' (default)'}")


def rules_file(ctx: Context) -> Iterator[Finding]:
    path = Path(ctx.settings.rules_path).resolve()
    if ctx.rules is None:
        yield Finding("rules", "fail", f"{path}: {ctx.rules_error}")
        return
    spec = ctx.rules.spec
    yield Finding("rules", "ok", f"{path}: {len(spec.rules)} rule(s), {len(spec.allowed_workspaces)} allowed "
                  f"workspace(s), {len(spec.channels)} channel(s)")


def ledger_reachable(ctx: Context) -> Iterator[Finding]:
    where = ctx.settings.state_dir if ctx.settings.ledger == "sqlite" else ctx.settings.storage_account_url or (
        "connection string")
    if ctx.ledger is None:
        yield Finding("ledger", "fail", f"{ctx.settings.ledger} ({where}): {ctx.ledger_error}")
        return
    try:
        ctx.ledger.audit(correlation_id="doctor-probe", limit=1)
    except (MlreactorError, OSError) as exc:
        yield Finding("ledger", "fail", f"{ctx.settings.ledger} ({where}) does not answer: {exc}")
        return
    yield Finding("ledger", "ok", f"{ctx.settings.ledger} ({where}) answers")


def adapter_modes(ctx: Context) -> Iterator[Finding]:
    if not ctx.adapters:
        return
    for kind, mode in describe(ctx.adapters).items():
        yield Finding("adapter", "info", f"{kind}: {mode}")


def channel_settings(ctx: Context) -> Iterator[Finding]:
    """A channel whose URL/secret setting is missing fails every notification sent to it."""
    if ctx.rules is None:
        return
    live = bool(ctx.adapters) and describe(ctx.adapters).get(ActionKind.NOTIFY.value) == "live"
    for name, channel in ctx.rules.spec.channels.items():
        missing = [s for s in _setting_names(channel) if ctx.settings.secret(s) is None]
        if not missing:
            yield Finding("channel", "ok", f"{name} ({channel.type}): its settings are set")
        elif live:
            yield Finding("channel", "fail", f"{name} ({channel.type}): {', '.join(missing)} not set — every "
                          "notification to it would fail")
        else:
            yield Finding("channel", "warn", f"{name} ({channel.type}): {', '.join(missing)} not set — fine while "
                          "notify is dry-run, would fail once it is live")


def key_vault_references(ctx: Context) -> Iterator[Finding]:
    """A value still reading ``@Microsoft.KeyVault(...)`` was not resolved by the platform (the secret is missing,
    or the app's identity may not read it): the setting reads as unset, so what needs it fails."""
    for name in unresolved_key_vault_references():
        yield Finding("key vault", "fail", f"{name} is an unresolved Key Vault reference and is not used: check "
                      "that the secret exists and the app's identity may read it ('Key Vault Secrets User')")


def workspaces_subscribed(ctx: Context) -> Iterator[Finding]:
    """Subscribed (MLREACTOR_SUBSCRIBED_WORKSPACES) against allowed: a subscribed workspace the rules reject stops
    the engine from starting; an allowed one nothing subscribes never sends an event."""
    if ctx.rules is None:
        return
    found = check_workspaces(ctx.settings.subscribed_workspace_ids, ctx.rules.spec.allowed_workspaces)
    for workspace in found.not_allowed:
        yield Finding("workspaces", "fail", f"{workspace} is subscribed but not in allowed_workspaces: the engine "
                      "refuses to start")
    for workspace in found.not_subscribed:
        yield Finding("workspaces", "warn", f"{workspace} is allowed but not in MLREACTOR_SUBSCRIBED_WORKSPACES: no "
                      "events from it will arrive")
    if not found.not_allowed and not found.not_subscribed:
        yield Finding("workspaces", "ok", f"{len(ctx.rules.spec.allowed_workspaces)} allowed, every one subscribed")


def release_gates(ctx: Context) -> Iterator[Finding]:
    """Every release rule's target read now (``mlreactor gates check``): a production release no person gates
    would be refused at run time. Only when releases are live — a dry run sends no release, and has no target."""
    if ctx.rules is None or not ctx.adapters:
        return
    if describe(ctx.adapters).get(ActionKind.QUEUE_RELEASE.value) != "live":
        yield Finding("release gates", "info", "not checked: queue_release is dry-run")
        return
    for gate in check_release_gates(ctx.settings, ctx.rules):
        where = f"{gate.rule}[{gate.index}] → {gate.target} ({gate.environment})"
        yield Finding("release gates", "ok" if gate.gated else "fail", f"{where}: {gate.why}")


def _setting_names(channel: Channel) -> list[str]:
    fields = ("url_setting", "secret_setting", "password_setting", "connection_string_setting")
    return [value for f in fields if isinstance(value := getattr(channel, f, None), str)]


CHECKS: list[Check] = [
    effective_settings, rules_file, ledger_reachable, adapter_modes, channel_settings, key_vault_references,
    workspaces_subscribed, release_gates,
]


def examine(settings: Settings, checks: Iterable[Check] = CHECKS) -> list[Finding]:
    """Build what the Function App would build from ``settings``, run every check, close what was opened."""
    ctx = Context(settings)
    try:
        ctx.rules = load_rules(settings.rules_path)
    except RulesError as exc:
        ctx.rules_error = str(exc).splitlines()[0] + (f" (+{len(exc.errors) - 1} more)" if len(exc.errors) > 1 else "")
    try:
        ctx.ledger = open_ledger(settings)
    except (MlreactorError, OSError) as exc:
        ctx.ledger_error = str(exc)
    try:
        if ctx.rules is not None and ctx.ledger is not None:
            ctx.adapters = build_adapters(settings, ctx.rules, ctx.ledger)
        return [finding for check in checks for finding in check(ctx)]
    finally:
        if ctx.ledger is not None:
            ctx.ledger.close()
