"""Create or update the Azure DevOps service-hooks subscriptions that send release signals to mlreactor.

Azure DevOps is outside ARM, so Bicep cannot create these; ``scripts/subscribe-release-hooks.py`` runs this with the
azure-devops SDK's service-hooks client. Idempotent: a subscription is *ours* when it has the same event, project and
hook URL (scheme, host and path — the ``?code=`` function key may change); ours are replaced (PUT) with the wanted
inputs, missing ones created (POST). Running it twice leaves the same subscriptions; nothing else is touched.

Each subscription is a Web Hooks consumer (``webHooks`` / ``httpRequest``) with basic auth (user ``mlreactor``, the
password ``MLREACTOR_RELEASE_HOOK_SECRET``) and ``messagesToSend: all`` — the documented YAML approval payloads name
their run only in the message (see ``signals.py``).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

#: (publisher, event type, resource version) — Microsoft's "Service hooks events" page.
PIPELINE_EVENTS = (
    ("pipelines", "ms.vss-pipelines.run-state-changed-event", "5.1-preview.1"),
    ("pipelines", "ms.vss-pipelines.stage-state-changed-event", "5.1-preview.1"),
    ("pipelines", "ms.vss-pipelinechecks-events.approval-pending", "5.1-preview.1"),
    ("pipelines", "ms.vss-pipelinechecks-events.approval-completed", "5.1-preview.1"),
)
CLASSIC_EVENTS = (
    ("rm", "ms.vss-release.deployment-approval-pending-event", "3.0-preview.1"),
    ("rm", "ms.vss-release.deployment-approval-completed-event", "3.0-preview.1"),
    ("rm", "ms.vss-release.deployment-completed-event", "3.0-preview.1"),
)
HOOK_USER = "mlreactor"


@dataclass(frozen=True)
class Change:
    action: str  # created | updated | would create | would update
    project: str
    event_type: str
    subscription_id: str | None

    def __str__(self) -> str:
        return f"{self.action:<13} {self.project}: {self.event_type}" + (
            f" ({self.subscription_id})" if self.subscription_id else "")


def _endpoint(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}".rstrip("/").lower()


def ensure_subscriptions(
    connection: Any, projects: Sequence[str], url: str, secret: str, *, flavours: Sequence[str] = ("pipeline",
                                                                                                  "classic"),
    environment: str | None = None, dry_run: bool = False,
) -> list[Change]:
    """Make each project's subscriptions match (see the module docstring); returns what was (or would be) done."""
    from azure.devops.v7_1.service_hooks.models import Subscription  # noqa: PLC0415 - only the script needs it

    factory = connection.clients_v7_1
    hooks, core = factory.get_service_hooks_client(), factory.get_core_client()
    events = [*(PIPELINE_EVENTS if "pipeline" in flavours else ()), *(CLASSIC_EVENTS if "classic" in flavours else ())]
    changes: list[Change] = []
    for project in projects:
        project_id = core.get_project(project).id
        for publisher, event_type, version in events:
            publisher_inputs = {"projectId": project_id}
            if environment and event_type.startswith("ms.vss-pipelinechecks-events."):
                publisher_inputs["environmentName"] = environment
            wanted = Subscription(
                publisher_id=publisher, event_type=event_type, resource_version=version, consumer_id="webHooks",
                consumer_action_id="httpRequest", publisher_inputs=publisher_inputs,
                consumer_inputs={"url": url, "basicAuthUsername": HOOK_USER, "basicAuthPassword": secret,
                                 "resourceDetailsToSend": "all", "messagesToSend": "all",
                                 "detailedMessagesToSend": "none"},
            )
            existing = [
                s for s in hooks.list_subscriptions(publisher_id=publisher, event_type=event_type,
                                                    consumer_id="webHooks") or []
                if (s.publisher_inputs or {}).get("projectId") == project_id
                and _endpoint((s.consumer_inputs or {}).get("url", "")) == _endpoint(url)
            ]
            if existing:
                found = existing[0].id
                if not dry_run:
                    hooks.replace_subscription(wanted, found)
                changes.append(Change("would update" if dry_run else "updated", project, event_type, found))
            else:
                created = None if dry_run else hooks.create_subscription(wanted).id
                changes.append(Change("would create" if dry_run else "created", project, event_type, created))
    return changes


def connect(organization: str, pat: str | None) -> Any:
    """A connection with the PAT, else an Entra ID token of the signed-in identity (``az login``)."""
    from azure.devops.connection import Connection  # noqa: PLC0415 - only the script needs it
    from msrest.authentication import BasicAuthentication, BasicTokenAuthentication  # noqa: PLC0415

    if pat:
        return Connection(base_url=organization, creds=BasicAuthentication("", pat))
    from azure.identity import DefaultAzureCredential  # noqa: PLC0415

    from shared.adapters.devops import DEVOPS_SCOPE  # noqa: PLC0415

    token = DefaultAzureCredential().get_token(DEVOPS_SCOPE).token
    return Connection(base_url=organization, creds=BasicTokenAuthentication({"access_token": token}))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--organization", required=True, help="https://dev.azure.com/ORG")
    parser.add_argument("--project", action="append", required=True, help="a project (repeat for several)")
    parser.add_argument("--url", required=True,
                        help="the hook URL: https://APP.azurewebsites.net/api/hooks/azure-devops/ORG?code=FUNCTION_KEY")
    parser.add_argument("--flavour", choices=("pipeline", "classic", "both"), default="both")
    parser.add_argument("--environment", help="only approvals of this environment (YAML pipelines)")
    parser.add_argument("--dry-run", action="store_true", help="say what would change, change nothing")
    args = parser.parse_args(argv)
    secret = os.environ.get("MLREACTOR_RELEASE_HOOK_SECRET", "")
    if not secret:
        print("set MLREACTOR_RELEASE_HOOK_SECRET (the same secret the Function App reads)", file=sys.stderr)
        return 2
    if not args.url.lower().startswith("https://") and not args.url.startswith("http://127.0.0.1"):
        print(f"--url must be https:// (got {urlsplit(args.url).scheme}://…)", file=sys.stderr)
        return 2
    flavours = ("pipeline", "classic") if args.flavour == "both" else (args.flavour,)
    connection = connect(args.organization.rstrip("/"), os.environ.get("MLREACTOR_DEVOPS_PAT"))
    for change in ensure_subscriptions(connection, args.project, args.url, secret, flavours=flavours,
                                       environment=args.environment, dry_run=args.dry_run):
        print(change)
    return 0
