"""Operations: the daily purge of ledger records older than the retention (events, results, audit, quarantine)."""

from __future__ import annotations

import logging
from datetime import timedelta

import azure.functions as func

from shared.clock import Clock, SystemClock
from shared.ledger import open_ledger
from shared.settings import Settings, get_settings

bp = func.Blueprint()
log = logging.getLogger("mlreactor.functions.ops")


def purge_expired(settings: Settings, clock: Clock) -> int:
    """Delete ledger records last touched more than ``retention_days`` ago; returns how many."""
    ledger = open_ledger(settings)
    try:
        return ledger.purge(clock.now() - timedelta(days=settings.retention_days))
    finally:
        ledger.close()


@bp.function_name("purge_ledger")
@bp.timer_trigger(arg_name="timer", schedule=get_settings().purge_schedule, run_on_startup=False, use_monitor=True)
def purge_ledger(timer: func.TimerRequest) -> None:
    settings = get_settings()
    purged = purge_expired(settings, SystemClock())
    log.info("purged %d ledger record(s) older than %d days", purged, settings.retention_days)
