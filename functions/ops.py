"""Operations: the purge of ledger records older than the retention (events, results, audit, quarantine).

The timer fires hourly; a pass over the ledger runs once a day and may take several runs at fleet scale: each run
stops within ``MLREACTOR_PURGE_BUDGET_SECONDS`` (inside the host's ``functionTimeout``) and the next one continues
where it stopped (the Tables ledger stores the continuation). A run with nothing to continue costs one read."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING

import azure.functions as func

if TYPE_CHECKING:
    from shared.clock import Clock
    from shared.ledger.port import PurgeProgress
    from shared.settings import Settings

bp = func.Blueprint()
log = logging.getLogger("mlreactor.functions.ops")

#: Hourly at minute 30 (NCRONTAB, 6 fields). A constant, not a setting: reading settings here would load the core at
#: cold start, and a %SETTING% expression would stop the host when the setting is missing.
PURGE_SCHEDULE = "0 30 * * * *"


def purge_expired(settings: Settings, clock: Clock) -> PurgeProgress:
    """Delete ledger records last touched more than ``retention_days`` ago, within the run's time budget."""
    from shared.ledger import open_ledger  # noqa: PLC0415 - the core loads on first use, not at cold start

    ledger = open_ledger(settings)
    try:
        return ledger.purge(
            clock.now() - timedelta(days=settings.retention_days),
            budget=timedelta(seconds=settings.purge_budget_seconds),
        )
    finally:
        ledger.close()


@bp.function_name("purge_ledger")
@bp.timer_trigger(arg_name="timer", schedule=PURGE_SCHEDULE, run_on_startup=False, use_monitor=True)
def purge_ledger(timer: func.TimerRequest) -> None:
    from shared.clock import SystemClock  # noqa: PLC0415
    from shared.settings import get_settings  # noqa: PLC0415

    settings = get_settings()
    progress = purge_expired(settings, SystemClock())
    log.info(
        "purged %d ledger record(s) older than %d days%s", progress.deleted, settings.retention_days,
        "" if progress.finished else "; the pass continues on the next run",
    )
