"""What is in one box besides its molecule, and the geometry it is imaged with: the nuisance draws.

Random streams (so a file is the same whatever the worker count or the run length):
``SeedSequence(seed, spawn_key=(index,))`` is the sample's own stream (rotation, shift, defocus,
SNR, noise; simulator.py), ``(index, 1)`` its nuisances (here), ``(index, 5)`` whether it is
empty, ``(first index of the batch, 2)`` the batch's geometry (tilts and simulation voxel size: one
per batch, which images its samples together), and with ``nuisance_probability`` < 1
``(index, 3)`` and ``(first index, 4)`` say which families are on for the sample and the batch.
Presets without nuisances draw nothing from these streams, so their files are unchanged; a family
that is off keeps its draws (the others' values do not move) and is then set to its off value.

Masks (one rule for every preset): each molecule in the box, the central one and every neighbour,
is rendered alone on the output grid and cut at its own iso-level (the iso-surface enclosing
mass / 0.81 A^3, density.py); the mask is their union, or with ``--label central`` the central
molecule's alone (the convention of masks of picked particles). Membranes and background are 0.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from voxuda_cli.simulate import nuisances as nz
from voxuda_cli.simulate.density import molecule_mask, render_density
from voxuda_cli.simulate.presets import MIN_BOX, SimulationSettings
from voxuda_cli.simulate.structures import Template

OFF = (0.0, 0.0)
# family label -> the settings fields that switch it on (their dataclass defaults are "off")
FAMILIES: dict[str, tuple[str, ...]] = {
    "neighbours": ("neighbours",),
    "membranes": ("membranes",),
    "background": ("background",),
    "coloured noise": ("noise_slope",),
    "B-factor": ("b_factor",),
    "dose weighting": ("dose",),
    "detector MTF": ("detector_mtf",),
    "contrast inversion": ("contrast_inversion",),
    "voxel size": ("sim_voxel_size",),
    "tilt range, step": ("tilt_max", "tilt_step_range"),
}
# the families --nuisance-probability switches (contrast inversion has its own fraction)
GATED = tuple(label for label in FAMILIES if label != "contrast inversion")


@dataclass(frozen=True)
class Geometry:
    """How a batch is imaged: tilt angles, and the grid it is simulated on before resampling."""

    angles: np.ndarray  # degrees
    voxel_size: float  # A, simulation grid
    box: int  # simulation grid edge; box * voxel_size = the output box's extent
    offset: float  # A added to coordinates drawn on the simulation grid (membranes; see batch_geometry)


@dataclass(frozen=True)
class Placement:
    """A molecule in the box: bead position = rotation @ template position + centre (A, x y z)."""

    molecule: int
    rotation: np.ndarray
    centre: np.ndarray


@dataclass
class Nuisances:
    """One sample's nuisance draws (all at their 'off' value when the settings leave them off)."""

    neighbours: list[Placement]
    membranes: list[tuple[np.ndarray, float, float, float]]  # centre (A), radius (A), separation (A), peak
    background: float  # std, x the noisy image's std
    background_field: np.ndarray | None  # unit-std smooth field on the output grid
    noise_slope: float
    b_factor: float
    detector_mtf: float  # MTF at Nyquist; 1 = off
    dose: float  # total e/A^2; 0 = off
    inverted: bool


def batch_geometry(first_index: int, settings: SimulationSettings) -> Geometry:
    """Tilts and simulation grid of the batch that starts at sample ``first_index``.

    With voxel-size jitter the simulation grid has n voxels of box * voxel_size / n A (n drawn so
    the voxel size falls in the range): the extent matches the output box exactly, and Fourier
    resampling keeps voxel 0 at voxel 0, so coordinates shift by (v_sim - v) / 2 to keep the
    box centre, voxel (n - 1) / 2, on the output's, voxel (box - 1) / 2.
    """
    from voxuda_cli.simulate.imaging import tilt_angles

    rng = np.random.default_rng(np.random.SeedSequence(settings.seed, spawn_key=(first_index, 2)))
    on = gated_on(settings, (first_index, 4))
    tilt_range = settings.tilt_range
    top = nz.uniform(rng, settings.tilt_max) if settings.tilt_max != OFF else None
    step = nz.uniform(rng, settings.tilt_step_range) if settings.tilt_step_range != OFF else settings.tilt_step
    if "tilt range, step" not in on:
        top, step = None, settings.tilt_step
    if top is not None:  # symmetric about 0, as collected: -n step .. n step, the largest n with n step <= top
        tilt_range = (-step * np.floor(top / step + 1e-9), step * np.floor(top / step + 1e-9))
    box, voxel = settings.box, settings.voxel_size
    if settings.sim_voxel_size != OFF and "voxel size" in on:
        drawn = nz.uniform(rng, settings.sim_voxel_size)
        box = max(MIN_BOX, int(round(settings.box * settings.voxel_size / drawn)))
        voxel = settings.box * settings.voxel_size / box
    return Geometry(tilt_angles(tilt_range, step), voxel, box, (voxel - settings.voxel_size) / 2)


def gated_on(settings: SimulationSettings, key: tuple[int, int]) -> frozenset[str]:
    """The gated families on for one sample (key (index, 3)) or batch (key (first index, 4)).

    One uniform draw per family in ``GATED`` order, so whether a family is on does not depend on
    which others the settings use; at probability 1 nothing is drawn.
    """
    if settings.nuisance_probability >= 1.0:
        return frozenset(GATED)
    rng = np.random.default_rng(np.random.SeedSequence(settings.seed, spawn_key=key))
    draws = rng.uniform(size=len(GATED))
    return frozenset(label for label, u in zip(GATED, draws) if u < settings.nuisance_probability)


def draw_nuisances(
    index: int,
    centre: Placement,
    radii: Sequence[float],
    pool: Sequence[int],
    settings: SimulationSettings,
) -> Nuisances:
    """Sample ``index``'s nuisances; ``radii`` of every molecule, ``pool`` the neighbour candidates."""

    rng = np.random.default_rng(np.random.SeedSequence(settings.seed, spawn_key=(index, 1)))
    count = int(rng.integers(settings.neighbours[0], settings.neighbours[1] + 1)) if settings.neighbours[1] else 0
    neighbours = []
    for _ in range(count):
        chosen = int(pool[int(rng.integers(len(pool)))])
        position = nz.neighbour_centre(
            rng, centre.centre, (radii[centre.molecule], radii[chosen]), settings.neighbour_distance
        )
        neighbours.append(Placement(chosen, random_rotation(rng), position))
    membranes = [_draw_membrane(rng, settings) for _ in range(_count(rng, settings.membranes))]
    background = nz.uniform(rng, settings.background)
    field = None
    if background > 0:
        length = nz.uniform(rng, settings.background_length)
        field = nz.smooth_background(rng, settings.box, settings.voxel_size, length)
    drawn = Nuisances(
        neighbours=neighbours,
        membranes=membranes,
        background=background,
        background_field=field,
        noise_slope=nz.uniform(rng, settings.noise_slope),
        b_factor=nz.uniform(rng, settings.b_factor),
        detector_mtf=nz.uniform(rng, settings.detector_mtf),
        dose=nz.uniform(rng, settings.dose),
        inverted=bool(settings.contrast_inversion > 0 and rng.uniform() < settings.contrast_inversion),
    )
    return switch_off(drawn, gated_on(settings, (index, 3)))


def switch_off(drawn: Nuisances, on: frozenset[str]) -> Nuisances:
    """``drawn`` with every per-sample family not in ``on`` at its off value."""
    off: dict[str, dict[str, Any]] = {
        "neighbours": {"neighbours": []},
        "membranes": {"membranes": []},
        "background": {"background": 0.0, "background_field": None},
        "coloured noise": {"noise_slope": 0.0},
        "B-factor": {"b_factor": 0.0},
        "dose weighting": {"dose": 0.0},
        "detector MTF": {"detector_mtf": 1.0},
    }
    changes: dict[str, Any] = {
        name: value for label, values in off.items() if label not in on for name, value in values.items()
    }
    return dataclasses.replace(drawn, **changes) if changes else drawn


def _count(rng: np.random.Generator, bounds: tuple[int, int]) -> int:
    return int(rng.integers(bounds[0], bounds[1] + 1)) if bounds[1] else 0


def _draw_membrane(rng: np.random.Generator, settings: SimulationSettings) -> tuple[np.ndarray, float, float, float]:
    """A sphere of random radius whose surface passes within half the box extent of the box centre."""
    radius = nz.log_uniform(rng, settings.membrane_radius)
    passing = rng.uniform(0.0, 0.5 * settings.box * settings.voxel_size)
    centre = nz.random_direction(rng) * (radius + passing)
    separation = nz.uniform(rng, nz.LEAFLET_SEPARATION_A)
    return centre, radius, separation, nz.uniform(rng, settings.membrane_density)


def render_molecule(template: Template, placement: Placement, box: int, voxel_size: float) -> np.ndarray:
    positions = template.positions @ placement.rotation.T.astype(np.float32) + placement.centre.astype(np.float32)
    return render_density(positions, template.masses, template.spreads, box, voxel_size)


def render_scene(
    templates: Sequence[Template],
    levels: Sequence[float],
    placements: Sequence[Placement],
    settings: SimulationSettings,
    empty: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Macromolecular density (Da per voxel) and the mask (``settings.label``) on the output grid.

    ``placements[0]`` is the box's own molecule, left out of an ``empty`` box; the rest are its neighbours.
    """
    box = settings.box
    density = np.zeros((box,) * 3, dtype=np.float32)
    mask = np.zeros((box,) * 3, dtype=bool)
    for index, placement in enumerate(placements):
        if index == 0 and empty:
            continue
        own = render_molecule(templates[placement.molecule], placement, box, settings.voxel_size)
        density += own
        if index == 0 or settings.label == "all":
            mask |= molecule_mask(own, levels[placement.molecule]).astype(bool)  # density.py's one mask rule
    return density, mask.astype(np.uint8)


def is_empty(index: int, settings: SimulationSettings) -> bool:
    """Whether sample ``index`` leaves out its own molecule (``--empty-fraction``; its own stream (index, 5),
    drawn only when the fraction is above 0, so other files are unchanged)."""
    if settings.empty_fraction <= 0:
        return False
    rng = np.random.default_rng(np.random.SeedSequence(settings.seed, spawn_key=(index, 5)))
    return bool(rng.uniform() < settings.empty_fraction)


def imaged_density(
    output_density: np.ndarray,
    membranes: Sequence[tuple[np.ndarray, float, float, float]],
    geometry: Geometry,
) -> np.ndarray:
    """What the microscope sees, on the simulation grid: the molecules plus membranes.

    On another grid the molecules are the output-grid density Fourier-resampled, not rendered
    again (half the rendering time): the final resampling back to the output grid keeps only what
    the output grid holds, so content beyond its Nyquist would be cropped either way. Noise, CTF
    and filters still act at the simulation voxel size, which is what the jitter is for.
    """
    from voxuda_cli.resample import fourier_resample

    if geometry.box == output_density.shape[0]:
        density = output_density.copy()
    else:
        density = fourier_resample(output_density, (geometry.box,) * 3)
    for centre, radius, separation, peak in membranes:
        shifted = np.asarray(centre) + geometry.offset
        density += nz.membrane_density(geometry.box, geometry.voxel_size, shifted, radius, separation, peak)
    return density


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A rotation matrix uniform on SO(3) (normalised 4D Gaussian quaternion)."""
    w, x, y, z = rng.standard_normal(4) / 1.0
    norm = np.sqrt(w * w + x * x + y * y + z * z)
    w, x, y, z = w / norm, x / norm, y / norm, z / norm
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )
