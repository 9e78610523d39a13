"""Signals: SIGTERM and SIGHUP stop a command like Ctrl-C (nothing left behind, exit 128 + N)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest

from tests.faults import leftovers, voxuda, wait_for
from voxuda_cli.signals import Interrupted, exit_code, handled, parse_signal, stop_request


def test_sigterm_and_sighup_raise_interrupted_with_their_exit_code() -> None:
    for signum, code in ((signal.SIGTERM, 143), (signal.SIGHUP, 129), (signal.SIGINT, 130)):
        with pytest.raises(Interrupted) as caught, handled():
            os.kill(os.getpid(), signum)
            signal.sigtimedwait([], 0)  # let the handler run here, inside the block
        assert caught.value.signum == signum and exit_code(caught.value) == code
    assert exit_code(KeyboardInterrupt()) == 130
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # put back after the block


def test_an_armed_stop_request_answers_later_and_unarmed_it_interrupts() -> None:
    usr1 = int(signal.SIGUSR1)
    with stop_request((usr1,)) as request:
        request.armed = True
        os.kill(os.getpid(), usr1)
        assert request.requested and request.name == "SIGUSR1"
        request.armed, request.signum = False, None
        with pytest.raises(Interrupted):
            os.kill(os.getpid(), usr1)
            signal.sigtimedwait([], 0)
    assert signal.getsignal(usr1) == signal.SIG_DFL


def test_parse_signal() -> None:
    assert parse_signal("SIGUSR1") == parse_signal("usr1") == parse_signal(str(int(signal.SIGUSR1)))
    with pytest.raises(KeyError):
        parse_signal("SIGNOPE")


def _sigterm_when_writing(process, folder: Path) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    """Send SIGTERM once the command is writing its output (its temporary file exists)."""
    wait_for(process, lambda: leftovers(folder))
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    return process.returncode, err.decode()


def test_sigterm_during_simulate_prep_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out" / "sim.h5"
    process = voxuda("simulate-prep", str(out), "--structures", "7pbl", "--n-per-structure", "5000",
                     "--tilt-step", "10", "--workers", "1")  # fmt: skip
    code, err = _sigterm_when_writing(process, out.parent)
    assert code == 143, err
    assert "interrupted (SIGTERM)" in err and "Traceback" not in err
    assert list(out.parent.iterdir()) == []


def test_sigterm_during_predict_leaves_nothing(tmp_path: Path) -> None:
    from tests.inference.models import threshold_network, write_model
    from voxuda_cli.io.mrc import write_mrc
    from voxuda_cli.io.volume import Volume

    model = write_model(tmp_path / "model.pt", threshold_network(width=2))
    tomogram = np.random.default_rng(0).normal(size=(96, 160, 160)).astype(np.float32)
    write_mrc(tmp_path / "tomo.mrc", Volume(tomogram, voxel_size=10.0))
    out = tmp_path / "out"
    out.mkdir()
    process = voxuda("predict", str(model), str(tmp_path / "tomo.mrc"), "-o", str(out / "mask.mrc"),
                     "--overlap", "0.75", "--probabilities")  # fmt: skip
    code, err = _sigterm_when_writing(process, out)
    assert code == 143, err
    assert "Traceback" not in err and list(out.iterdir()) == []


def test_a_signal_inside_held_back_is_answered_when_it_ends() -> None:
    from voxuda_cli.signals import held_back

    done = []
    with pytest.raises(Interrupted) as caught, handled(), held_back():
        os.kill(os.getpid(), signal.SIGTERM)
        signal.sigtimedwait([], 0)
        done.append("the block ran to its end")
    assert done and caught.value.signum == signal.SIGTERM
