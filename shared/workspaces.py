"""One list of workspaces: the ones Event Grid delivers from (subscribed) against the ones the rules allow.

Bicep subscribes the workspaces in its ``azureMlWorkspaceIds`` parameter and passes the same list to the app as
``MLREACTOR_SUBSCRIBED_WORKSPACES``; the shipped ``reactions.yaml`` allows exactly that list with::

    allowed_workspaces: {from_setting: MLREACTOR_SUBSCRIBED_WORKSPACES}

A rules file may still list resource ids instead (to allow fewer workspaces than are subscribed, say). Then a
subscribed workspace the rules do not allow would have every event ``rejected`` — visible only in the audit — so
the engine refuses to start instead, and an allowed workspace nothing subscribes is reported (its events never come).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from shared.errors import ConfigError
from shared.settings import app_setting

FROM_SETTING = "from_setting"


def resolve_allowed(value: object) -> object:
    """``{from_setting: NAME}`` → the comma-separated ids in app setting NAME; anything else is returned as is
    (and validated as a list of ids by the rules model)."""
    if not isinstance(value, Mapping):
        return value
    if set(value) != {FROM_SETTING} or not isinstance(value[FROM_SETTING], str):
        raise ValueError(f"must be a list of workspace resource ids or {{{FROM_SETTING}: SETTING_NAME}}")
    name = value[FROM_SETTING]
    ids = [ws.strip() for ws in (app_setting(name) or "").split(",") if ws.strip()]
    if not ids:
        raise ValueError(
            f"{FROM_SETTING} {name}: the app setting is not set (in Azure, Bicep sets it to the subscribed "
            f"workspace ids; locally, set it to the ids to allow, comma-separated)"
        )
    return ids


@dataclass(frozen=True)
class WorkspaceCheck:
    """Subscribed vs allowed, compared as Event Grid topics are (case-insensitively)."""

    not_allowed: list[str]  # subscribed, but the rules reject their events: the engine must not start
    not_subscribed: list[str]  # allowed, but no subscription delivers their events: reported

    def as_dict(self) -> dict[str, list[str]]:
        return {"subscribed_not_allowed": self.not_allowed, "allowed_not_subscribed": self.not_subscribed}

    def raise_if_not_allowed(self) -> None:
        if self.not_allowed:
            raise ConfigError(
                "MLREACTOR_SUBSCRIBED_WORKSPACES names workspace(s) the rules' allowed_workspaces do not allow, so "
                f"every event from them would be rejected: {', '.join(self.not_allowed)} — add them to "
                "allowed_workspaces (or use {from_setting: MLREACTOR_SUBSCRIBED_WORKSPACES}), or stop subscribing them"
            )


def check(subscribed: Sequence[str], allowed: Sequence[str]) -> WorkspaceCheck:
    """Nothing subscribed (a local run, no Bicep) is nothing to compare."""
    if not subscribed:
        return WorkspaceCheck(not_allowed=[], not_subscribed=[])
    allowed_keys = {ws.strip().lower() for ws in allowed}
    subscribed_keys = {ws.strip().lower() for ws in subscribed}
    return WorkspaceCheck(
        not_allowed=[ws for ws in subscribed if ws.strip().lower() not in allowed_keys],
        not_subscribed=[ws for ws in allowed if ws.strip().lower() not in subscribed_keys],
    )
