"""Notification channels declared under ``channels:`` in the rules file: one typed model per channel type.

A channel holds where and how to deliver, never a secret: webhook URLs, signing secrets, SMTP passwords and ACS
connection strings are *named* app settings (``url_setting: MLREACTOR_TEAMS_OPS_URL``), resolved at send time through
``Settings.secret`` (Key Vault references in Azure). The models are validated when the rules file loads, so a typo
(``url_seting``) or a pasted URL fails ``mlreactor rules check`` naming the field, not the first notification.

```yaml
channels:
  ops-teams: {type: teams, url_setting: MLREACTOR_TEAMS_OPS_URL}
  ops-slack: {type: slack, url_setting: MLREACTOR_SLACK_OPS_URL}
  ops-mail:
    type: email
    smtp_host: smtp.office365.com
    username: mlreactor@contoso.com
    password_setting: MLREACTOR_SMTP_PASSWORD
    sender: mlreactor@contoso.com
    to: [ml-ops@contoso.com]
  audit-hook: {type: webhook, url_setting: MLREACTOR_AUDIT_HOOK_URL, secret_setting: MLREACTOR_AUDIT_HOOK_SECRET}
```
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

_SETTING = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_ADDRESS = re.compile(r"^[^@\s<>\"',;]+@[^@\s<>\"',;]+\.[^@\s<>\"',;]+$")


def _setting_name(value: str) -> str:
    # The value is never echoed: a pasted webhook URL or password must not land in an error message.
    if not _SETTING.match(value):
        raise ValueError("must be the NAME of an app setting (e.g. MLREACTOR_TEAMS_OPS_URL), not the secret itself")
    return value


def _address(value: str) -> str:
    if not _ADDRESS.match(value):
        raise ValueError(f"{value!r} is not an e-mail address like ops@contoso.com")
    return value


SettingName = Annotated[str, AfterValidator(_setting_name)]
Address = Annotated[str, AfterValidator(_address)]


class _Channel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = ""


class TeamsChannel(_Channel):
    """Microsoft Teams through a Workflows (Power Automate) "post to a channel when a webhook request is received"."""

    type: Literal["teams"]
    url_setting: SettingName


class SlackChannel(_Channel):
    """A Slack incoming webhook (https://hooks.slack.com/services/...)."""

    type: Literal["slack"]
    url_setting: SettingName


class WebhookChannel(_Channel):
    """Any HTTPS receiver; the body is signed with HMAC-SHA256 so the receiver can verify it came from us."""

    type: Literal["webhook"]
    url_setting: SettingName
    secret_setting: SettingName


class EmailChannel(_Channel):
    """SMTP submission: STARTTLS on 587 (default) or implicit TLS on 465; never plain text."""

    type: Literal["email"]
    smtp_host: str = Field(min_length=1)
    smtp_port: int = Field(default=587, gt=0, lt=65536)
    security: Literal["starttls", "tls"] = "starttls"
    username: str | None = None
    password_setting: SettingName | None = None
    sender: Address
    to: list[Address] = Field(min_length=1)


class AcsEmailChannel(_Channel):
    """Azure Communication Services Email: a connection string setting (``endpoint=...;accesskey=...``)."""

    type: Literal["acs_email"]
    connection_string_setting: SettingName
    sender: Address = Field(description="A MailFrom address of a domain linked to the ACS resource.")
    to: list[Address] = Field(min_length=1)


Channel = Annotated[
    TeamsChannel | SlackChannel | WebhookChannel | EmailChannel | AcsEmailChannel, Field(discriminator="type")
]
