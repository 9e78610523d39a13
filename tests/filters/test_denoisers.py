"""The denoiser registry: built-ins, a plug-in registered from outside the package, unknown names."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from voxuda_cli.errors import VoxudaInputError
from voxuda_cli.filters import denoisers
from voxuda_cli.filters.denoisers import Denoiser, DenoiserParams, make_denoiser, register_denoiser


class Clamp(Denoiser):
    """A toy denoiser: clamps z-scored values to [-limit, limit] (its parameter from sigma_r)."""

    name = "clamp"

    def __init__(self, limit: float) -> None:
        self.limit = limit

    def apply(self, volumes: torch.Tensor) -> torch.Tensor:
        return volumes.clamp(-self.limit, self.limit)


@pytest.fixture
def clamp() -> Iterator[str]:
    register_denoiser("clamp", lambda params: Clamp(params.sigma_r))
    yield "clamp"
    denoisers._REGISTRY.pop("clamp")


def test_built_ins_are_registered_and_none_is_the_input() -> None:
    assert denoisers.names()[:4] == ("ibf", "bf", "ngm", "none")
    batch = torch.randn(2, 6, 6, 6)
    assert make_denoiser("none")(batch) is batch
    assert make_denoiser("ibf", DenoiserParams(sigma_r=0.5))(batch).shape == batch.shape


def test_unknown_denoiser_is_an_error_listing_the_registry() -> None:
    with pytest.raises(VoxudaInputError, match="--denoiser median: unknown denoiser; use one of ibf, bf, ngm, none"):
        make_denoiser("median")


def test_plug_in_denoises_batches_and_files(clamp: str, runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from voxuda_cli.cli.app import app
    from voxuda_cli.filters import denoise
    from voxuda_cli.io.mrc import read_mrc, write_mrc
    from voxuda_cli.io.volume import Volume
    from voxuda_cli.training.settings import TrainSettings

    batch = torch.linspace(-3, 3, 2 * 4 * 4 * 4).reshape(2, 4, 4, 4)
    assert float(denoise(batch, clamp, sigma_r=1.5).abs().max()) == pytest.approx(1.5)
    TrainSettings(denoiser=clamp)  # the settings accept the plug-in's name
    data = np.random.default_rng(0).normal(10, 2, (8, 8, 8)).astype(np.float32)
    write_mrc(tmp_path / "in.mrc", Volume(data, voxel_size=(5.0, 5.0, 5.0)))
    result = runner.invoke(
        app,
        [
            "ibf-denoise",
            str(tmp_path / "in.mrc"),
            "-o",
            str(tmp_path / "out.mrc"),
            "--denoiser",
            clamp,
            "--sigma-r",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    mean, std = data.astype(np.float64).mean(), data.astype(np.float64).std()
    expected = np.clip((data - mean) / std, -1, 1) * std + mean
    np.testing.assert_allclose(read_mrc(tmp_path / "out.mrc").data, expected, rtol=1e-5, atol=1e-4)
