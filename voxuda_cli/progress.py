"""The one shape of a progress callback: ``progress(advance, status="", total=None)``.

Every long-running library function that reports progress takes one of these: ``advance`` units
(samples, windows, z-rows, volumes) are done since the last call, ``status`` says what is being
worked on, ``total`` (when the function learns it) how many units there are in all. The CLI
turns it into a rich progress bar (cli/common.bar_progress); Python callers may pass any function
of that shape, or nothing. The training loop reports per epoch instead (loop.TrainProgress).
"""

from __future__ import annotations

from collections.abc import Callable

# Callable[..., None], not a Protocol of that signature: callers pass lambdas that take only what
# they use (``lambda n: bar.advance(n)``), which a Protocol's keywords would refuse.
Progress = Callable[..., None]
