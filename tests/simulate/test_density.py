import numpy as np
import pytest

from voxuda_cli.simulate.density import (
    iso_level,
    molecular_volume,
    molecule_mask,
    render_density,
    voxel_coordinates,
)
from voxuda_cli.simulate.structures import template_from_structure


def test_render_keeps_mass_and_places_beads_in_z_y_x_order() -> None:
    positions = np.array([[60.0, 0.0, 0.0], [0.0, -60.0, 0.0], [0.0, 0.0, 80.0]], dtype=np.float32)  # x, y, z (A)
    masses = np.array([100.0, 200.0, 300.0], dtype=np.float32)
    density = render_density(positions, masses, np.zeros(3, np.float32), box=32, voxel_size=10.0)
    assert density.shape == (32, 32, 32) and density.dtype == np.float32
    assert density.sum() == pytest.approx(600.0, rel=1e-5)
    for (x, y, z), mass in zip(positions, masses):
        index = np.round(np.array([z, y, x]) / 10.0 + 15.5 - 0.01).astype(int)  # nearest voxel, below on a tie
        window = density[tuple(slice(i - 2, i + 3) for i in index)]
        assert window.sum() == pytest.approx(mass, rel=0.02)
    np.testing.assert_allclose(voxel_coordinates(positions[:1], 32, 10.0), [[15.5, 15.5, 21.5]])


def test_sub_voxel_position_does_not_change_the_mass() -> None:
    masses = np.ones(1, np.float32)
    sums = [
        render_density(np.array([[dx, 0, 0]], np.float32), masses, np.zeros(1, np.float32), 16, 10.0).sum()
        for dx in np.linspace(0, 10, 7)
    ]
    np.testing.assert_allclose(sums, 1.0, rtol=1e-5)


def test_iso_level_encloses_the_requested_volume() -> None:
    density = np.random.default_rng(0).random((16, 16, 16)).astype(np.float32)
    level = iso_level(density, volume_a3=500 * 8.0, voxel_size=2.0)
    assert molecule_mask(density, level).sum() == 500


def test_mask_of_a_uniform_ball_is_the_ball(write_ball) -> None:  # type: ignore[no-untyped-def]
    """A ball of protein density: the mass / 0.81 iso-surface should recover the ball itself."""
    radius = 40.0
    template = template_from_structure(write_ball(radius=radius))
    density = render_density(template.positions, template.masses, template.spreads, 32, 10.0)
    volume = molecular_volume(template.mass)
    assert volume == pytest.approx(4 / 3 * np.pi * radius**3, rel=0.03)
    mask = molecule_mask(density, iso_level(density, volume, 10.0))
    centre = np.average(np.indices(mask.shape).reshape(3, -1), axis=1, weights=density.ravel())
    grid = np.indices(mask.shape).reshape(3, -1).T
    ball = (np.linalg.norm(grid - centre, axis=1) * 10.0 <= radius).reshape(mask.shape)
    iou = (mask & ball).sum() / (mask | ball).sum()
    assert iou > 0.85
    # at 10 A a voxel full of protein holds 810 Da; the iso-surface sits below that, near the paper's 300
    assert 250 < iso_level(density, volume, 10.0) < 500
