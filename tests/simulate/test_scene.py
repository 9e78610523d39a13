"""Nuisances composed by the simulator: on and off change what they should; presets; same seed, same bytes."""

import dataclasses
from pathlib import Path

import h5py
import numpy as np
import pytest

from voxuda_cli.simulate.presets import SimulationSettings, preset
from voxuda_cli.simulate.simulator import simulate_dataset, simulate_in_memory

FAST = {"structures": ("7pbl", "4v1w"), "tilt_step": 6.0, "n_per_structure": 3}


def fast(snr: float = 0.05, **nuisances: object) -> SimulationSettings:
    return SimulationSettings(**{**FAST, "snr": (snr,), **nuisances})  # type: ignore[arg-type]


def low_frequency_fraction(images: np.ndarray, cutoff: float = 0.08) -> float:
    power = np.abs(np.fft.fftn(images, axes=(1, 2, 3))) ** 2
    k = np.fft.fftfreq(images.shape[-1])
    radius = np.sqrt(k[:, None, None] ** 2 + k[None, :, None] ** 2 + k[None, None, :] ** 2)
    power[:, 0, 0, 0] = 0.0
    return float(power[:, radius < cutoff].sum() / power.sum())


def test_neighbours_add_their_density_inside_the_box_to_the_mask() -> None:
    alone = simulate_in_memory(fast())
    crowded = simulate_in_memory(fast(neighbours=(3, 3), neighbour_distance=(0.6, 0.8)))
    assert (crowded.params["neighbours"] == 3).all() and (alone.params["neighbours"] == 0).all()
    # the central molecule is drawn from the sample's own stream: same pose, so its mask is kept
    assert np.all(crowded.masks >= alone.masks)
    assert crowded.masks.sum() > 1.3 * alone.masks.sum()
    assert np.all(crowded.density >= alone.density - 1e-3)
    # neighbour voxels are labelled by the same iso-level rule: no voxel of low density is foreground
    extra = (crowded.masks == 1) & (alone.masks == 0)
    assert crowded.density[extra].min() > 0.5 * crowded.params["iso_level"].min()


def test_neighbours_from_given_molecules_and_masks_stay_binary() -> None:
    settings = fast(neighbours=(2, 2), neighbour_structures=("3p3w",))
    dataset = simulate_in_memory(settings)
    assert set(np.unique(dataset.masks)) <= {0, 1}
    assert set(dataset.classes) == {"7pbl", "4v1w"}  # a neighbour-only molecule is never a sample


def test_membranes_are_in_the_image_but_not_in_the_mask() -> None:
    plain = simulate_in_memory(fast(10.0))
    membrane = simulate_in_memory(fast(10.0, membranes=(1, 1)))
    assert np.array_equal(plain.masks, membrane.masks) and np.array_equal(plain.density, membrane.density)
    assert (membrane.params["membranes"] == 1).all()
    assert np.abs(plain.images - membrane.images).mean() > 0.1


def test_background_adds_low_frequency_power() -> None:
    plain = simulate_in_memory(fast())
    background = simulate_in_memory(fast(background=(1.0, 1.0)))
    assert low_frequency_fraction(background.images) > 3 * low_frequency_fraction(plain.images)
    assert np.array_equal(plain.masks, background.masks)


def test_coloured_noise_moves_image_power_to_low_frequencies() -> None:
    white = simulate_in_memory(fast(0.01))
    pink = simulate_in_memory(fast(0.01, noise_slope=(2.0, 2.0)))
    assert low_frequency_fraction(pink.images, 0.15) > 1.5 * low_frequency_fraction(white.images, 0.15)


def test_b_factor_and_detector_blur_the_signal() -> None:
    sharp = simulate_in_memory(fast(1000.0))
    blurred = simulate_in_memory(fast(1000.0, b_factor=(1500.0, 1500.0)))
    detector = simulate_in_memory(fast(1000.0, detector_mtf=(0.2, 0.2)))
    for other in (blurred, detector):
        assert low_frequency_fraction(other.images, 0.15) > low_frequency_fraction(sharp.images, 0.15)


def test_crowded_preset_is_the_hard_target_with_a_held_out_nuisance() -> None:
    source, target, crowded = preset("source"), preset("target"), preset("crowded")
    assert crowded.structures == target.structures and not set(crowded.structures) & set(source.structures)
    assert crowded.kind == "target" and crowded.neighbours[0] >= 1 and crowded.background[1] > 0
    assert crowded.noise_slope[0] > 0 and crowded.b_factor[0] > 0 and crowded.snr_distribution == "log-uniform"
    assert (crowded.defocus, crowded.tilt_range) != (source.defocus, source.tilt_range)
    # held out: no source preset has a detector MTF
    assert crowded.detector_mtf[1] < 1.0 and source.detector_mtf == target.detector_mtf == (1.0, 1.0)


def test_target_preset_masks_are_the_single_molecule_iso_surface() -> None:
    dataset = simulate_in_memory(dataclasses.replace(preset("target"), n_per_structure=1, tilt_step=10.0))
    assert (dataset.params["neighbours"] == 0).all()
    expected = dataset.density > dataset.params["iso_level"][:, None, None, None]
    assert np.array_equal(dataset.masks, expected.astype(np.uint8))


@pytest.mark.parametrize("name", ["crowded"])
def test_same_seed_same_bytes_for_any_worker_count(tmp_path: Path, name: str) -> None:
    settings = dataclasses.replace(preset(name), n_per_structure=3, tilt_step=9.0)
    simulate_dataset(tmp_path / "one.h5", settings)
    simulate_dataset(tmp_path / "two.h5", dataclasses.replace(settings, workers=2))
    simulate_dataset(tmp_path / "other.h5", dataclasses.replace(settings, seed=1))
    with h5py.File(tmp_path / "one.h5") as one, h5py.File(tmp_path / "two.h5") as two:
        with h5py.File(tmp_path / "other.h5") as other:
            for key in ("images", "masks", "density"):
                assert one[key][()].tobytes() == two[key][()].tobytes()
            assert not np.array_equal(one["images"][()], other["images"][()])


def shifted_correlation(image: np.ndarray, density: np.ndarray, shift: int) -> float:
    return float(np.corrcoef(np.roll(image, shift, axis=2).ravel(), density.ravel())[0, 1])


def test_voxel_size_jitter_simulates_on_another_grid_and_stays_aligned() -> None:
    plain = simulate_in_memory(fast(1000.0))
    jittered = simulate_in_memory(fast(1000.0, sim_voxel_size=(7.0, 16.0)))
    assert (plain.params["sim_voxel_size"] == 10.0).all()
    voxel = jittered.params["sim_voxel_size"]
    assert ((voxel >= 7.0 - 0.2) & (voxel <= 16.0 + 0.4)).all() and np.ptp(voxel) > 0.5
    # the simulated extent is the output box's: 32 x 10 A = n x v for an integer n
    assert np.allclose(320.0 / voxel, np.round(320.0 / voxel), atol=1e-3)
    assert jittered.images.shape == plain.images.shape and np.array_equal(jittered.masks, plain.masks)
    # simulated on a coarser grid: nothing beyond that grid's Nyquist survives the resampling
    k = np.fft.fftfreq(32)
    beyond = np.abs(k)[:, None, None] > 0.5 * 10.0 / voxel[voxel > 11.0][:, None, None, None]
    coarse = np.abs(np.fft.fft(jittered.images[voxel > 11.0], axis=1)) ** 2
    reference = np.abs(np.fft.fft(plain.images[voxel > 11.0], axis=1)) ** 2
    assert beyond.any() and (coarse * beyond).sum() < 1e-6 * coarse.sum() < (reference * beyond).sum()
    for image, density in zip(jittered.images, jittered.density):
        centred = shifted_correlation(image, density, 0)
        assert centred > 0.4 and centred > max(shifted_correlation(image, density, s) for s in (-1, 1))


def test_tilt_range_and_step_are_drawn_per_batch_in_range() -> None:
    dataset = simulate_in_memory(fast(tilt_max=(40.0, 70.0), tilt_step_range=(2.0, 4.0), n_per_structure=4))
    assert np.array_equal(dataset.params["tilt_min"], -dataset.params["tilt_max"])
    assert ((dataset.params["tilt_max"] > 40.0 - 4) & (dataset.params["tilt_max"] <= 70.0)).all()
    assert np.any(dataset.params["tilt_max"] != 60.0)
    assert ((dataset.params["tilt_step"] >= 2.0 - 1e-6) & (dataset.params["tilt_step"] <= 4.0 + 1e-6)).all()
    assert len(np.unique(dataset.params["tilt_step"][::4])) == 2  # two batches of four, one geometry each


def test_contrast_inversion_and_dose_change_the_image_not_the_mask() -> None:
    plain = simulate_in_memory(fast(1000.0))
    inverted = simulate_in_memory(fast(1000.0, contrast_inversion=1.0))
    dosed = simulate_in_memory(fast(1000.0, dose=(150.0, 150.0)))
    assert (inverted.params["inverted"] == 1).all()
    np.testing.assert_allclose(inverted.images, -plain.images, atol=1e-5)
    assert low_frequency_fraction(dosed.images, 0.15) > low_frequency_fraction(plain.images, 0.15)
    assert np.array_equal(dosed.masks, plain.masks) and np.array_equal(inverted.masks, plain.masks)


def test_randomized_preset_covers_every_nuisance_but_the_held_out_one() -> None:
    from voxuda_cli.simulate.preview import FAMILIES, families_on

    randomized = preset("randomized")
    assert randomized.structures == preset("source").structures and randomized.kind == "source"
    assert set(families_on(randomized)) == set(FAMILIES) - {"detector MTF", "contrast inversion"}
    assert "detector MTF" in families_on(preset("crowded"))
    assert randomized.sim_voxel_size == (7.0, 16.0) and randomized.snr_distribution == "log-uniform"
    assert randomized.n_samples == 3000 and randomized.nuisance_probability == 0.25


def test_randomized_same_seed_same_bytes(tmp_path: Path) -> None:
    settings = dataclasses.replace(preset("randomized"), n_per_structure=3, tilt_step_range=(6.0, 9.0))
    simulate_dataset(tmp_path / "one.h5", settings)
    simulate_dataset(tmp_path / "two.h5", dataclasses.replace(settings, workers=2))
    with h5py.File(tmp_path / "one.h5") as one, h5py.File(tmp_path / "two.h5") as two:
        for key in ("images", "masks", "density", "params/sim_voxel_size"):
            assert one[key][()].tobytes() == two[key][()].tobytes()


def test_preview_shows_each_nuisance(tmp_path: Path) -> None:
    from voxuda_cli.simulate.preview import family_settings

    settings = dataclasses.replace(preset("randomized"), n_per_structure=1, tilt_step_range=(6.0, 9.0))
    alone = family_settings(settings, "membranes")
    assert alone.membranes == settings.membranes and alone.neighbours == (0, 0) and alone.snr == (1.0,)
    summary = simulate_dataset(tmp_path / "r.h5", settings, preview=tmp_path / "r.png")
    assert summary["samples"] == 3 and (tmp_path / "r.png").stat().st_size > 10_000


EVERY_FAMILY = {
    "neighbours": (2, 2),
    "membranes": (1, 1),
    "background": (1.0, 1.0),
    "noise_slope": (1.0, 1.0),
    "b_factor": (500.0, 500.0),
    "dose": (100.0, 100.0),
    "sim_voxel_size": (12.0, 12.0),
    "tilt_max": (45.0, 45.0),
    "tilt_step_range": (9.0, 9.0),
}


def test_nuisance_probability_zero_is_every_family_off_byte_for_byte() -> None:
    plain = simulate_in_memory(fast())
    none_on = simulate_in_memory(fast(nuisance_probability=0.0, **EVERY_FAMILY))
    for key in ("neighbours", "membranes", "background", "noise_slope", "b_factor", "dose"):
        assert (none_on.params[key] == 0).all()
    assert (none_on.params["sim_voxel_size"] == 10.0).all() and (none_on.params["tilt_max"] == 60.0).all()
    assert plain.images.tobytes() == none_on.images.tobytes() and np.array_equal(plain.masks, none_on.masks)


def test_nuisance_probability_switches_each_family_per_sample() -> None:
    many = {**FAST, "n_per_structure": 8}
    always = simulate_in_memory(fast(**{**EVERY_FAMILY, **many}))
    half = simulate_in_memory(fast(nuisance_probability=0.5, **{**EVERY_FAMILY, **many}))
    plain = simulate_in_memory(fast(**many))
    with_neighbours = half.params["neighbours"] == 2
    assert 0 < with_neighbours.sum() < len(with_neighbours)
    # a family that is on keeps the draws it has at probability 1; off, the mask is the lone molecule's
    assert np.array_equal(half.masks[with_neighbours], always.masks[with_neighbours])
    assert np.array_equal(half.masks[~with_neighbours], plain.masks[~with_neighbours])
    for key, on in (("b_factor", 500.0), ("dose", 100.0), ("noise_slope", 1.0), ("background", 1.0)):
        assert set(np.unique(half.params[key])) == {0.0, on}
    # families are drawn independently: not all on or off together
    assert not np.array_equal(half.params["b_factor"] > 0, half.params["dose"] > 0) or not np.array_equal(
        half.params["b_factor"] > 0, with_neighbours
    )
    assert set(half.params["sim_voxel_size"]) <= {10.0, *always.params["sim_voxel_size"]}


def test_nuisance_probability_same_seed_same_bytes(tmp_path: Path) -> None:
    settings = dataclasses.replace(
        preset("randomized"), n_per_structure=3, tilt_step_range=(6.0, 9.0), nuisance_probability=0.5
    )
    simulate_dataset(tmp_path / "one.h5", settings)
    simulate_dataset(tmp_path / "two.h5", dataclasses.replace(settings, workers=2))
    with h5py.File(tmp_path / "one.h5") as one, h5py.File(tmp_path / "two.h5") as two:
        for key in ("images", "masks", "params/neighbours", "params/sim_voxel_size"):
            assert one[key][()].tobytes() == two[key][()].tobytes()


def test_central_labels_mark_the_picked_molecule_only_and_keep_the_image() -> None:
    alone = simulate_in_memory(fast())
    crowded = fast(neighbours=(3, 3), neighbour_distance=(0.6, 0.8))
    union = simulate_in_memory(crowded)
    central = simulate_in_memory(dataclasses.replace(crowded, label="central"))
    np.testing.assert_array_equal(central.images, union.images)  # the same scene, labelled otherwise
    np.testing.assert_array_equal(central.masks, alone.masks)  # the neighbours are background
    assert union.masks.sum() > central.masks.sum()


def test_ctf_premultiplied_boxes_keep_the_signal_bright_and_lose_the_band_at_the_ctf_zeros() -> None:
    plain = simulate_in_memory(fast(snr=1.0))
    premultiplied = simulate_in_memory(fast(snr=1.0, ctf_correction="premultiply"))
    assert np.isfinite(premultiplied.images).all()
    # CTF^2 is never negative: the low-passed image follows the density, inside the mask brighter
    for dataset in (plain, premultiplied):
        assert dataset.images[dataset.masks == 1].mean() > dataset.images[dataset.masks == 0].mean()
    assert not np.allclose(plain.images, premultiplied.images)


def test_the_picked_preset_is_randomized_with_central_labels_at_low_snr() -> None:
    picked, randomized = preset("picked"), preset("randomized")
    assert picked.label == "central" and randomized.label == "all"
    assert picked.snr[1] < randomized.snr[1]
    assert dataclasses.replace(picked, preset="randomized", label="all", snr=randomized.snr) == randomized
