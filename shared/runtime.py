"""Composition: settings → rules, ledger, adapters → one ``Engine`` per process, reused across invocations."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from shared.adapters import build_adapters, describe
from shared.engine import Engine
from shared.ledger import open_ledger
from shared.longlived import long_lived
from shared.reactions import Rules, load_rules
from shared.redact import install_log_redaction, register_settings
from shared.settings import Settings, get_settings, unresolved_key_vault_references
from shared.telemetry import configure
from shared.workspaces import check as check_workspaces

_lock = threading.Lock()
_engine: Engine | None = None


log = logging.getLogger("mlreactor.runtime")


def build_engine(settings: Settings) -> Engine:
    """The engine the settings describe: rules, ledger, adapters, telemetry (the function and the CLI share it).

    Refuses (``ConfigError``) when a subscribed workspace is not allowed by the rules; logs what is wrong but
    not fatal (see ``report_configuration``)."""
    install_log_redaction()
    register_settings(settings)
    rules = load_rules(settings.rules_path)
    report_configuration(settings, rules)
    ledger = open_ledger(settings)
    connection = settings.applicationinsights_connection_string
    return Engine(
        rules,
        ledger,
        build_adapters(settings, rules, ledger),
        telemetry=configure(connection.get_secret_value() if connection else None),
        lease=timedelta(seconds=settings.lease_seconds),
        budget=timedelta(seconds=settings.action_budget_seconds),
        deadline=timedelta(seconds=settings.action_deadline_seconds),
        error_deliveries=settings.error_deliveries,
    )


def report_configuration(settings: Settings, rules: Rules) -> None:
    """Startup checks of the deployment's settings against the rules: the function's startup log, the CLI's stderr."""
    workspaces = check_workspaces(settings.subscribed_workspace_ids, rules.spec.allowed_workspaces)
    workspaces.raise_if_not_allowed()
    for workspace in workspaces.not_subscribed:
        log.warning("allowed workspace %s is not in MLREACTOR_SUBSCRIBED_WORKSPACES: no events from it will arrive",
                    workspace)
    for name in unresolved_key_vault_references():
        log.error("app setting %s is an unresolved Key Vault reference and is not used: check that the secret "
                  "exists and the app's identity may read it", name)


def engine() -> Engine:
    """The process-wide engine, built on first use (not at import: cold start stays cheap). It and what it loads
    (settings, rules, the ledger's and adapters' modules) live as long as the process: ``long_lived``."""
    global _engine
    with _lock:
        if _engine is None:
            with long_lived():
                settings = get_settings()
                logging.getLogger("mlreactor").setLevel(settings.log_level.upper())
                _engine = build_engine(settings)
            modes = describe(_engine.adapters)
            if "live" not in modes.values():
                log.warning("mlreactor runs in dry-run (no Azure settings): actions are recorded, not sent")
            else:
                log.info("mlreactor adapters: %s", ", ".join(f"{kind}={mode}" for kind, mode in modes.items()))
        return _engine
