"""Model lifecycle: registered (tag, offline test) and deployed (champion tags, notify)."""

from __future__ import annotations

import azure.functions as func

from functions._trigger import handle

bp = func.Blueprint()


@bp.function_name("on_model_registered")
@bp.event_grid_trigger(arg_name="event")
def on_model_registered(event: func.EventGridEvent) -> None:
    handle(event)


@bp.function_name("on_model_deployed")
@bp.event_grid_trigger(arg_name="event")
def on_model_deployed(event: func.EventGridEvent) -> None:
    handle(event)
