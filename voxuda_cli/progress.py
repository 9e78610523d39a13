"""The one shape of a progress callback: ``progress(advance, status="", total=None)``.

Every long-running library function that reports progress takes one of these: ``advance`` units
(samples, windows, z-rows, volumes) are done since the last call, ``status`` says what is being
worked on, ``total`` (when the function learns it) how many units there are in all. The CLI
turns it into a rich progress bar (cli/common.bar_progress); Python callers may pass any function
of that shape, or nothing. The training loop reports per epoch instead (loop.TrainProgress).
"""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def __call__(self, advance: int, status: str = "", total: int | None = None) -> None: ...
