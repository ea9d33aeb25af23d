"""Adapters carry out actions. Each module imports its Azure SDK lazily, inside the adapter, on first use."""

from __future__ import annotations

from collections.abc import Mapping

from shared.actions import ActionAdapter, ActionKind
from shared.adapters.azureml import KINDS, AzureMLAdapter, AzureMLState, WorkspaceClients
from shared.adapters.dryrun import DryRunAdapter
from shared.adapters.gate import GateAdapter, UnknownState
from shared.adapters.releases.router import ReleaseRouter
from shared.clock import Clock
from shared.ledger.port import Ledger
from shared.reactions import Rules
from shared.releases.tracking import TrackedReleases
from shared.settings import Settings

Adapters = Mapping[ActionKind, ActionAdapter]


def build_adapters(
    settings: Settings, rules: Rules, ledger: Ledger, *, clock: Clock | None = None
) -> dict[ActionKind, ActionAdapter]:
    """The adapter for each action kind: live where its settings are given and dry-run is not forced.

    ``ledger`` is the engine's: the release adapter keeps its model-version guard there, notify its throttle
    windows and per-channel delivery records (stamped by ``clock``).
    """
    from shared.adapters.notify import NotifyAdapter  # noqa: PLC0415 - loaded with the engine, not at cold start

    adapters: dict[ActionKind, ActionAdapter] = {kind: DryRunAdapter(kind) for kind in ActionKind}
    # The gate only reads and judges; without a workspace to read it judges the event's own numbers.
    adapters[ActionKind.QUALITY_GATE] = GateAdapter(UnknownState())
    # Dry-run notify still applies flapping, throttles and digests: a dry run shows what Ops would receive. Built
    # once, live or not (its TLS context and layouts are a noticeable part of a cold start).
    send = not settings.dry_run and (settings.dry_run is False or settings.notify_live)
    adapters[ActionKind.NOTIFY] = NotifyAdapter(settings, rules, ledger, clock=clock, send=send)
    if settings.dry_run:
        return adapters
    if settings.azureml_is_live:
        azureml = AzureMLAdapter(WorkspaceClients(settings), rules.base_dir)
        adapters.update(dict.fromkeys(KINDS, azureml))
        adapters[ActionKind.QUALITY_GATE] = GateAdapter(AzureMLState(azureml.clients), clock)
    devops: ActionAdapter = adapters[ActionKind.QUEUE_RELEASE]
    github: ActionAdapter = adapters[ActionKind.QUEUE_RELEASE]
    if settings.devops_organization_url:
        from shared.adapters.devops import DevOpsReleaseAdapter  # noqa: PLC0415 - only when configured

        # Every queued release is recorded, so its hooks and the reconciler can tie it back (shared/releases/).
        devops = TrackedReleases(DevOpsReleaseAdapter(settings, ledger, clock=clock), ledger,
                                 default_organization=settings.devops_organization_url, clock=clock)
    if settings.github_is_configured:
        from shared.adapters.github import GitHubReleaseAdapter  # noqa: PLC0415 - only when configured

        github = TrackedReleases(GitHubReleaseAdapter(settings, ledger, clock=clock), ledger, clock=clock)
    adapters[ActionKind.QUEUE_RELEASE] = ReleaseRouter(devops, github)
    if settings.eventgrid_topic_endpoint:
        from shared.adapters.eventgrid_out import EventGridPublisher  # noqa: PLC0415 - only when configured

        adapters[ActionKind.PUBLISH_EVENT] = EventGridPublisher(settings)
    return adapters


def describe(adapters: Adapters) -> dict[str, str]:
    """``{"run_pipeline": "live", "notify": "dry-run", ...}`` for health output and the CLI banner."""
    return {kind.value: "live" if adapter.live else "dry-run" for kind, adapter in adapters.items()}
