import numpy as np
import pytest

from voxuda_cli.errors import VoxudaInputError
from voxuda_cli.simulate.density import molecular_volume
from voxuda_cli.simulate.presets import SimulationSettings
from voxuda_cli.simulate.scene import random_rotation
from voxuda_cli.simulate.simulator import iter_samples, simulate_in_memory

FAST = {"tilt_step": 6.0, "snr": (0.05,)}


def test_rotations_are_uniform_on_so3() -> None:
    rng = np.random.default_rng(0)
    matrices = np.stack([random_rotation(rng) for _ in range(4000)])
    np.testing.assert_allclose(
        matrices @ matrices.transpose(0, 2, 1), np.broadcast_to(np.eye(3), matrices.shape), atol=1e-9
    )
    assert np.allclose(np.linalg.det(matrices), 1.0)
    # uniform on SO(3): every entry has mean 0 and variance 1/3
    assert np.abs(matrices.mean(axis=0)).max() < 0.03
    np.testing.assert_allclose(matrices.var(axis=0), 1 / 3, atol=0.03)


def test_samples_carry_names_classes_params_and_z_scored_bright_images() -> None:
    settings = SimulationSettings(structures=("7pbl", "4v1w"), n_per_structure=2, snr=(0.03, 1.0), tilt_step=6.0)
    dataset = simulate_in_memory(settings)
    assert dataset.names[:4] == ["7pbl_snr0.03_00000", "7pbl_snr0.03_00001", "7pbl_snr1_00000", "7pbl_snr1_00001"]
    assert dataset.classes == ["7pbl"] * 4 + ["4v1w"] * 4
    dataset.validate()
    np.testing.assert_allclose(dataset.images.mean(axis=(1, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(dataset.images.std(axis=(1, 2, 3)), 1, atol=1e-4)
    assert dataset.params["snr"].tolist() == pytest.approx([0.03, 0.03, 1.0, 1.0] * 2)
    assert dataset.params["rotation"].shape == (8, 3, 3) and dataset.params["shift"].shape == (8, 3)
    assert ((dataset.params["defocus"] >= 2) & (dataset.params["defocus"] <= 5)).all()
    assert (dataset.params["tilt_min"] == -60).all() and (dataset.params["tilt_max"] == 60).all()
    # protein bright: at SNR 1 the image follows the clean density
    for index in (2, 3, 6, 7):
        assert np.corrcoef(dataset.images[index].ravel(), dataset.density[index].ravel())[0, 1] > 0.4


@pytest.mark.parametrize("pdb_id", ["4v1w", "7pbl", "3p3w"])
def test_mask_volume_matches_mass_over_protein_density(pdb_id: str) -> None:
    dataset = simulate_in_memory(SimulationSettings(structures=(pdb_id,), n_per_structure=4, **FAST))
    expected = molecular_volume(float(dataset.params["mass"][0]))
    for mask in dataset.masks:
        assert mask.sum() * 10.0**3 == pytest.approx(expected, rel=0.10)


def test_log_uniform_snr_stays_in_range() -> None:
    settings = SimulationSettings(
        structures=("7pbl",), n_per_structure=12, snr=(0.01, 0.1), snr_distribution="log-uniform", tilt_step=10.0
    )
    dataset = simulate_in_memory(settings)
    snr = dataset.params["snr"]
    assert ((snr >= 0.01) & (snr <= 0.1)).all() and len(set(snr.tolist())) == 12
    assert dataset.names[0] == "7pbl_00000"


def test_same_seed_same_samples_other_seed_other_samples() -> None:
    settings = SimulationSettings(structures=("7pbl",), n_per_structure=6, seed=5, **FAST)
    first = list(iter_samples(settings))
    second = list(iter_samples(settings))
    for a, b in zip(first, second):
        assert a.name == b.name
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.mask, b.mask)
    other = list(iter_samples(SimulationSettings(structures=("7pbl",), n_per_structure=6, seed=6, **FAST)))
    assert not np.array_equal(first[0].image, other[0].image)


def test_box_too_small_for_the_molecule() -> None:
    with pytest.raises(VoxudaInputError, match="larger --box"):
        list(iter_samples(SimulationSettings(structures=("3jb9",), box=24, n_per_structure=1, **FAST)))


def test_empty_boxes_leave_out_their_own_molecule_only() -> None:
    """--empty-fraction: the same draws (pose, neighbours, noise) with the box's own molecule left out."""
    common = dict(structures=("4v1w",), n_per_structure=4, neighbours=(1, 1), seed=3, **FAST)
    full = simulate_in_memory(SimulationSettings(**common))
    empty = simulate_in_memory(SimulationSettings(**common, empty_fraction=1.0))
    assert full.params["empty"].tolist() == [0.0] * 4 and empty.params["empty"].tolist() == [1.0] * 4
    np.testing.assert_array_equal(full.params["rotation"], empty.params["rotation"])
    assert (empty.density <= full.density + 1e-3).all() and (empty.density.sum() < 0.8 * full.density.sum())
    assert (empty.masks <= full.masks).all() and empty.masks.sum() < full.masks.sum()
    assert empty.masks.sum() > 0  # the neighbours are still there, labelled (--label all)
    half = simulate_in_memory(SimulationSettings(**{**common, "n_per_structure": 16}, empty_fraction=0.5))
    assert 0 < half.params["empty"].sum() < 16
    with pytest.raises(VoxudaInputError, match="--empty-fraction 1.5"):
        SimulationSettings(**common, empty_fraction=1.5)
