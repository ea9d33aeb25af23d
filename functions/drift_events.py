"""Drift: the legacy v1 DatasetDriftDetected event and the v2 model-monitor signal (a RunStatusChanged)."""

from __future__ import annotations

import azure.functions as func

from functions._trigger import handle

bp = func.Blueprint()


@bp.function_name("on_dataset_drift")
@bp.event_grid_trigger(arg_name="event")
def on_dataset_drift(event: func.EventGridEvent) -> None:
    handle(event)


@bp.function_name("on_model_monitor_signal")
@bp.event_grid_trigger(arg_name="event")
def on_model_monitor_signal(event: func.EventGridEvent) -> None:
    handle(event)
