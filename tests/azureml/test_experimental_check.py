"""azure-ai-ml's experimental-class check, answered from frame names instead of ``inspect.stack()`` (cold start).

The SDK asks "is a ``_from_rest_object`` on the stack?" each time it builds an experimental class; the stock answer
reads every frame's source. Ours must give the same answer in every stack, and be in place once a client exists.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from azure.ai.ml._utils import _experimental

from shared.adapters.azureml import WorkspaceClients
from shared.adapters.azureml import clients as clients_module
from shared.events import Workspace
from tests.azureml.conftest import azureml_settings
from tests.fakes.azureml import FakeCredential

WORKSPACE = Workspace.parse(
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-mlops/providers/"
    "Microsoft.MachineLearningServices/workspaces/mlw-prod"
)


def _stock() -> bool:
    """The SDK's own test, as azure-ai-ml 1.35.2 writes it (``_utils/_experimental.py``)."""
    return any(frame.function == "_from_rest_object" for frame in inspect.stack())


def _from_rest_object(ask: Callable[[], bool]) -> bool:  # the name the SDK looks for
    return _nested(ask, 5)


def _nested(ask: Callable[[], bool], depth: int) -> bool:
    return _nested(ask, depth - 1) if depth else ask()


def test_building_a_client_puts_the_frame_name_check_in_place() -> None:
    assert WORKSPACE is not None
    WorkspaceClients(azureml_settings(), credential=FakeCredential())._build(WORKSPACE)

    assert _experimental._should_skip_warning is clients_module._skip_warning


def test_it_answers_as_the_stock_check_outside_and_inside_a_rest_conversion() -> None:
    ours = clients_module._skip_warning

    assert ours() is _stock() is False
    assert _nested(ours, 3) is _nested(_stock, 3) is False
    assert _from_rest_object(ours) is _from_rest_object(_stock) is True

