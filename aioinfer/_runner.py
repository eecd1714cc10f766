"""``Runner``: the internal interface of what runs a model's inputs in two halves, implemented by
:class:`~aioinfer.AsyncModel` and :class:`~aioinfer.Batcher`.

``infer(x)`` is ``run_adapted(adapt(x))``. The halves are apart so that a caller can check and
convert inputs where it likes (the ASGI app does it on a worker thread, next to decoding the body)
and then run them on the event loop, and so that a Batcher can check each call against its own
rules and run the stacked batch on its model. Not part of the public API: its names may change.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from ._inputs import Inputs
from ._outputs import Outputs

Arrays = dict[int, np.ndarray]  # inputs checked and converted: arrays by input index


class Runner(Protocol):
    def adapt(self, inputs: Inputs) -> Arrays:
        """``inputs`` (as ``infer`` takes them) checked against the model and converted to its
        arrays; raises an :class:`InputError` for inputs that do not fit. Runs nothing, touches no
        state: safe on any thread."""
        ...

    async def run_adapted(self, arrays: Arrays, timeout: float | None = None) -> Outputs:
        """``infer`` for ``arrays`` made by this runner's :meth:`adapt` (not checked again)."""
        ...
