"""TrainSettings: the paper's defaults, and clear errors for values the loop cannot use."""

from __future__ import annotations

from pathlib import Path

import pytest

from voxuda_cli.errors import VoxudaInputError
from voxuda_cli.training.settings import TrainSettings


def test_defaults_are_the_papers() -> None:
    s = TrainSettings()
    assert (s.method, s.denoiser, s.epochs, s.batch_size, s.lr, s.lr_step, s.lr_gamma) == (
        "vox-uda",
        "ibf",
        300,
        16,
        1e-3,
        100,
        0.1,
    )
    assert (s.width, s.eta, s.ema, s.sigma_d, s.sigma_r, s.keep_rate, s.n_sampled) == (
        32,
        0.85,
        0.99,
        120.0,
        1.2,
        0.244,
        10,
    )
    assert s.con_lambdas == (0.2, 0.2, 0.3, 0.3)


def test_paths_become_absolute_tuples() -> None:
    s = TrainSettings(src="a.h5", tgt=["b.mrc", "c.mrc"], noise="n.json")  # type: ignore[arg-type]
    assert s.src == (Path("a.h5").absolute(),)
    assert len(s.tgt) == 2 and all(p.is_absolute() for p in s.tgt)
    assert s.noise == Path("n.json").absolute()


@pytest.mark.parametrize(
    ("change", "option"),
    [
        ({"method": "mean-teacher"}, "--method"),
        ({"denoiser": "gauss"}, "--denoiser"),
        ({"epochs": 0}, "--epochs"),
        ({"batch_size": 0}, "--batch-size"),
        ({"eta": 0.3}, "--eta"),
        ({"ema": 1.0}, "--ema"),
        ({"keep_rate": 1.5}, "--keep-rate"),
        ({"con_lambdas": (0.2, 0.2, 0.3)}, "--con-lambdas"),
        ({"pl_weight": -1.0}, "--pl-weight"),
        ({"device": "tpu"}, "--device"),
    ],
)
def test_bad_values_name_the_option(change: dict, option: str) -> None:
    with pytest.raises(VoxudaInputError, match=option):
        TrainSettings(**change)
