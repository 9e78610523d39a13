import numpy as np
import pytest
from scipy import ndimage

from voxuda_cli.errors import VoxudaInputError
from voxuda_cli.inference.smoothing import check_smooth, smoothed_mask


def _ball(shape: tuple[int, int, int], radius: float) -> np.ndarray:
    grid = np.indices(shape) - ((np.array(shape) - 1) / 2)[:, None, None, None]
    return (grid**2).sum(axis=0) <= radius**2


def test_keeps_the_expected_volume_and_removes_speckle(rng: np.random.Generator) -> None:
    truth = _ball((32, 32, 32), 7.0)
    # an uncertain network on noise: 0.7 inside the particle with a third of it dropped to 0.3
    # (holes), and 1 % of the background at 0.9 (speckle)
    inside = np.where(rng.random(truth.shape) < 0.33, 0.3, 0.7)
    outside = np.where(rng.random(truth.shape) < 0.01, 0.9, 0.0)
    probabilities = np.where(truth, inside, outside).astype(np.float32)
    plain = probabilities > 0.5
    smooth = smoothed_mask(probabilities, 20.0, 10.0).astype(bool)
    assert smooth.sum() == round(float(probabilities.sum()))

    def dice(mask: np.ndarray) -> float:
        return 2 * (mask & truth).sum() / (mask.sum() + truth.sum())

    assert ndimage.label(smooth)[1] == 1 < ndimage.label(plain)[1]
    assert dice(smooth) > dice(plain) + 0.1


def test_sigma_is_in_angstrom() -> None:
    probabilities = np.zeros((24, 24, 24), np.float32)
    probabilities[12, 12, 12] = 30.0  # 30 voxels of expected foreground in one spot
    at_10 = smoothed_mask(probabilities, 20.0, 10.0)
    at_5 = smoothed_mask(probabilities, 10.0, 5.0)  # the same physical blur on a finer grid
    assert np.array_equal(at_10, at_5)


def test_empty_and_deterministic(rng: np.random.Generator) -> None:
    assert smoothed_mask(np.zeros((8, 8, 8), np.float32), 10.0, 10.0).sum() == 0
    probabilities = rng.random((16, 16, 16)).astype(np.float32)
    assert np.array_equal(smoothed_mask(probabilities, 15.0, 10.0), smoothed_mask(probabilities, 15.0, 10.0))


@pytest.mark.parametrize("bad", [-1.0, float("nan")])
def test_bad_sigma_is_refused(bad: float) -> None:
    with pytest.raises(VoxudaInputError, match="--smooth"):
        check_smooth(bad)
