"""Runs: completed (offline-test results → quality gate) and failed / canceled (notify Ops)."""

from __future__ import annotations

import azure.functions as func

from functions._trigger import handle

bp = func.Blueprint()


@bp.function_name("on_run_completed")
@bp.event_grid_trigger(arg_name="event")
def on_run_completed(event: func.EventGridEvent) -> None:
    handle(event)


@bp.function_name("on_run_failed")
@bp.event_grid_trigger(arg_name="event")
def on_run_failed(event: func.EventGridEvent) -> None:
    handle(event)
