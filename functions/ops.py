"""Operations: the daily purge of ledger records older than the retention (events, results, audit, quarantine)."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING

import azure.functions as func

if TYPE_CHECKING:
    from shared.clock import Clock
    from shared.settings import Settings

bp = func.Blueprint()
log = logging.getLogger("mlreactor.functions.ops")

#: Daily at 02:30 UTC (NCRONTAB, 6 fields). A constant, not a setting: reading settings here would load the core at
#: cold start, and a %SETTING% expression would stop the host when the setting is missing.
PURGE_SCHEDULE = "0 30 2 * * *"


def purge_expired(settings: Settings, clock: Clock) -> int:
    """Delete ledger records last touched more than ``retention_days`` ago; returns how many."""
    from shared.ledger import open_ledger  # noqa: PLC0415 - the core loads on first use, not at cold start

    ledger = open_ledger(settings)
    try:
        return ledger.purge(clock.now() - timedelta(days=settings.retention_days))
    finally:
        ledger.close()


@bp.function_name("purge_ledger")
@bp.timer_trigger(arg_name="timer", schedule=PURGE_SCHEDULE, run_on_startup=False, use_monitor=True)
def purge_ledger(timer: func.TimerRequest) -> None:
    from shared.clock import SystemClock  # noqa: PLC0415
    from shared.settings import get_settings  # noqa: PLC0415

    settings = get_settings()
    purged = purge_expired(settings, SystemClock())
    log.info("purged %d ledger record(s) older than %d days", purged, settings.retention_days)
