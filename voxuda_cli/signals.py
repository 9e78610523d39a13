"""Signals: SIGTERM and SIGHUP end a command like Ctrl-C, and ``train`` can checkpoint on a signal.

Schedulers stop jobs with SIGTERM (SLURM at a time limit, on preemption or scancel); a closed
terminal sends SIGHUP. Python's default for both is to die on the spot, leaving temporary files.
Here they raise Interrupted (a KeyboardInterrupt), so every ``with``/``finally`` runs as for Ctrl-C:
temporaries are removed and the command exits 128 + the signal number (130, 143, 129).

``train`` arms a StopRequest for the signals it checkpoints on (--checkpoint-signal): while armed,
such a signal only sets the request; the loop sees it after the current step, writes a checkpoint
at that step and exits. Unarmed (while the data loads, say) it interrupts like the others.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from types import FrameType

TERMINATING = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(KeyboardInterrupt):
    """The command was asked to stop by ``signum``; ``str()`` is what the command says about it."""

    def __init__(self, signum: int, message: str | None = None) -> None:
        super().__init__(message or f"interrupted ({signal.Signals(signum).name})")
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class Stopped(Interrupted):
    """``train`` answered a checkpoint signal: the checkpoint is written, --resume continues."""


def describe(exc: KeyboardInterrupt) -> str:
    """What a command says when a signal stopped it."""
    return str(exc) if isinstance(exc, Interrupted) else "interrupted (SIGINT)"


def exit_code(exc: KeyboardInterrupt) -> int:
    """128 + the signal number; a plain KeyboardInterrupt is SIGINT's 130."""
    return exc.exit_code if isinstance(exc, Interrupted) else 128 + signal.SIGINT


@dataclass
class StopRequest:
    """A signal the training loop answers at the next step boundary (with a checkpoint)."""

    signals: tuple[int, ...] = ()
    armed: bool = False
    signum: int | None = None

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""


_current: StopRequest | None = None
_held = 0  # depth of held_back blocks
_pending: int | None = None  # a signal that arrived inside one


def _handler(signum: int, frame: FrameType | None) -> None:
    global _pending
    if _current is not None and _current.armed and signum in _current.signals:
        _current.signum = _current.signum or signum  # answered at the next step boundary
        return
    if _held:
        _pending = _pending or signum
        return
    raise Interrupted(signum)


@contextlib.contextmanager
def handled(signums: tuple[int, ...] = TERMINATING) -> Iterator[None]:
    """While the block runs, ``signums`` raise Interrupted (in the main thread; a no-op elsewhere)."""
    previous = {}
    try:
        for signum in signums:
            previous[signum] = signal.signal(signum, _handler)
    except ValueError:  # not the main thread (a library caller's worker): leave signals alone
        pass
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


@contextlib.contextmanager
def stop_request(signums: tuple[int, ...]) -> Iterator[StopRequest]:
    """A StopRequest for ``signums`` (armed by the caller around the steps it can checkpoint)."""
    global _current
    request, outer = StopRequest(signals=signums), _current
    _current = request
    try:
        with handled(signums):
            yield request
    finally:
        _current = outer


@contextlib.contextmanager
def held_back() -> Iterator[None]:
    """Answer a stopping signal only when the block ends (a few lines that must not be cut in two).

    Not the signal mask: a signal sent to the process may be taken by any of its threads (torch's,
    rich's), and Python then runs the handler in the main thread wherever it is.
    """
    global _held, _pending
    _held += 1
    try:
        yield
    finally:
        _held -= 1
        if not _held and _pending is not None:
            signum, _pending = _pending, None
            raise Interrupted(signum)


def parse_signal(name: str) -> int:
    """'SIGUSR1', 'USR1' or '10' -> 10; ValueError for anything else."""
    text = name.strip().upper()
    if text.isdigit():
        return int(signal.Signals(int(text)))
    return int(signal.Signals[text if text.startswith("SIG") else f"SIG{text}"])
