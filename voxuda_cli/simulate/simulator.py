"""The simulation pipeline: molecules -> per-sample poses and optics -> subtomograms -> dataset file.

Per run, each molecule is prepared once (template loaded, beads merged to half a voxel, box
checked, mask iso-level found); per sample only its beads are rotated and splatted (cheap,
exact rotation) and the tilt series is imaged (imaging.py) in batches of ``BATCH_SIZE`` samples.

Nuisances (scene.py, nuisances.py) compose in: neighbours and membranes into the imaged density,
B-factor, dose and detector filters with the CTF, noise colour and detector noise spectrum on the
tilt-image noise, then resampling, background and contrast inversion on the reconstruction.

Reproducibility: every sample draws everything (rotation, shift, defocus, SNR, projection noise)
from its own stream, ``SeedSequence(seed, spawn_key=(index,))`` (nuisances and batch geometry from
their own streams, scene.py); batches are fixed runs of
consecutive indices; torch runs one thread per process. So a file is byte-identical whatever
``workers`` is, and sample i of a run is sample i of any longer run with the same settings.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from voxuda_cli.errors import VoxudaInputError
from voxuda_cli.normalise import zscore
from voxuda_cli.progress import Progress
from voxuda_cli.simulate import nuisances as nz
from voxuda_cli.simulate.density import iso_level, molecular_volume, render_density
from voxuda_cli.simulate.presets import SimulationSettings
from voxuda_cli.simulate.scene import (
    Geometry,
    Nuisances,
    Placement,
    batch_geometry,
    draw_nuisances,
    imaged_density,
    is_empty,
    random_rotation,
    render_molecule,
    render_scene,
)
from voxuda_cli.simulate.structures import Template, load_template

if TYPE_CHECKING:
    from voxuda_cli.simulate.imaging import Envelope

BATCH_SIZE = 4  # samples imaged together (fixed: batches must not depend on the worker count)
BEAD_SPACING_VOXELS = 0.5  # beads merged to half a voxel: far below the resolution, ~2x fewer beads
_REFERENCE_POSES = 8  # random poses averaged to set a molecule's iso-level
_IN_FLIGHT_PER_WORKER = 2  # batches queued per worker: keeps memory flat in the sample count
PARAMS_DOC = {
    "snr": "requested var(signal)/var(noise) of the reconstruction (realised exactly per sample)",
    "defocus": "um underfocus",
    "tilt_min": "degrees",
    "tilt_max": "degrees",
    "tilt_step": "degrees",
    "rotation": "3x3 matrix acting on (x, y, z) column vectors: bead position = rotation @ template position",
    "shift": "angstrom (x, y, z) of the molecule centre from the box centre, voxel (box - 1) / 2",
    "iso_level": "density (Da per voxel) of the mask's iso-surface",
    "mass": "molecular mass in Da (united-atom, hydrogens included)",
    "neighbours": "neighbouring molecules placed about the central one (their density in the box is in the mask)",
    "membranes": "membrane sheets in the box (labelled background)",
    "background": "smooth background std, x the noisy image's std (0: none)",
    "noise_slope": "tilt-image noise power ~ f^-slope (0: white)",
    "b_factor": "A^2, envelope exp(-B s^2 / 4) on the tilt images (0: none)",
    "detector_mtf": "detector MTF at Nyquist, with its noise spectrum (1: perfect detector)",
    "dose": "total e/A^2 of the dose-weighting exposure filter (0: none)",
    "inverted": "1 if the contrast was inverted (protein dark)",
    "sim_voxel_size": "A, voxel size simulated at before Fourier resampling to the output's",
    "empty": "1 if the box was imaged without its own molecule (--empty-fraction; the noise its SNR sets)",
}


@dataclass(frozen=True)
class Molecule:
    """A molecule ready for a run: its beads at the run's resolution, mask level and shift limit."""

    template: Template
    iso_level: float  # Da per voxel
    max_shift: float  # angstrom per axis
    role: str = "sample"  # sample: a --structures entry (centred in boxes); neighbour: only ever a neighbour
    neighbour: bool = False  # drawn as a neighbour in other boxes

    @property
    def pdb_id(self) -> str:
        return self.template.pdb_id


@dataclass(frozen=True)
class SampleSpec:
    """What a sample is before its random draws: its index, molecule and name."""

    index: int
    molecule: int
    snr: float | None  # None: drawn log-uniform from the settings' range
    name: str


@dataclass
class SimulatedSample:
    name: str
    class_name: str
    image: np.ndarray  # z-scored, protein bright
    density: np.ndarray  # clean, Da per voxel
    mask: np.ndarray  # uint8
    params: dict[str, Any] = field(default_factory=dict)


def reference_iso_level(template: Template, box: int, voxel_size: float) -> float:
    """Iso-level enclosing mass / 0.81 A^3, averaged over a few fixed random poses.

    One level per molecule (not per sample) makes the mask a true iso-surface: every copy is cut
    at the same density, and its volume then matches mass / 0.81 to a few per cent. The box is
    enlarged for a molecule that does not fit (a neighbour): the level depends on the voxel size
    and the blur, not on the box.
    """
    rng = np.random.default_rng(20250101)
    box = max(box, int(np.ceil(2 * template.radius / voxel_size)) + 4)
    volume = molecular_volume(template.mass)
    levels = []
    for _ in range(_REFERENCE_POSES):
        positions = template.positions @ random_rotation(rng).T.astype(np.float32)
        positions = positions + rng.uniform(-0.5, 0.5, 3).astype(np.float32) * voxel_size
        density = render_density(positions, template.masses, template.spreads, box, voxel_size)
        levels.append(iso_level(density, volume, voxel_size))
    return float(np.mean(levels))


def prepare_molecule(spec: str | Path, settings: SimulationSettings, role: str = "sample") -> Molecule:
    """Load a structure, check it fits the box (a neighbour need not), merge its beads, find its iso-level."""
    template = load_template(spec)
    extent = settings.box * settings.voxel_size
    if role == "sample" and 2 * template.radius > extent:
        raise VoxudaInputError(
            f"{spec}: the molecule spans {2 * template.radius:.0f} A (any rotation) but the box is "
            f"{settings.box} x {settings.voxel_size:g} A = {extent:.0f} A; use a larger --box or --voxel-size"
        )
    template = template.coarsened(BEAD_SPACING_VOXELS * settings.voxel_size)
    max_shift = max(0.0, min(settings.max_shift * settings.voxel_size, extent / 2 - template.radius))
    with torch_single_thread():
        level = reference_iso_level(template, settings.box, settings.voxel_size)
    return Molecule(template=template, iso_level=level, max_shift=max_shift, role=role)


def prepare_molecules(settings: SimulationSettings) -> list[Molecule]:
    """The run's molecules: every --structures entry, then neighbour-only molecules (if any)."""
    molecules = [prepare_molecule(spec, settings) for spec in settings.structures]
    ids = [m.pdb_id for m in molecules]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise VoxudaInputError(f"--structures: {duplicates[0]} is given twice; each structure once")
    if settings.neighbours[1] == 0:
        return molecules
    if not settings.neighbour_structures:
        return [dataclasses.replace(m, neighbour=True) for m in molecules]
    for spec in settings.neighbour_structures:
        template_id = load_template(spec).pdb_id
        known = [i for i, m in enumerate(molecules) if m.pdb_id == template_id]
        if known:
            molecules[known[0]] = dataclasses.replace(molecules[known[0]], neighbour=True)
        else:
            molecules.append(dataclasses.replace(prepare_molecule(spec, settings, role="neighbour"), neighbour=True))
    return molecules


def plan_samples(settings: SimulationSettings, molecules: Sequence[Molecule]) -> list[SampleSpec]:
    """Every sample's index, molecule and name, in output order (molecule, SNR level, copy)."""
    specs: list[SampleSpec] = []
    levels: list[float | None] = list(settings.snr) if settings.snr_distribution == "levels" else [None]
    for m_index, molecule in enumerate(molecules):
        if molecule.role != "sample":
            continue
        for level in levels:
            for copy in range(settings.n_per_structure):
                stem = molecule.pdb_id if level is None else f"{molecule.pdb_id}_snr{level:g}"
                specs.append(SampleSpec(len(specs), m_index, level, f"{stem}_{copy:05d}"))
    return specs


@dataclass
class _Draws:
    rotation: np.ndarray
    shift: np.ndarray
    defocus: float
    snr: float
    noise: np.ndarray


def _draw(spec: SampleSpec, molecule: Molecule, settings: SimulationSettings, geometry: Geometry) -> _Draws:
    rng = np.random.default_rng(np.random.SeedSequence(settings.seed, spawn_key=(spec.index,)))
    rotation = random_rotation(rng)
    shift = rng.uniform(-1.0, 1.0, 3) * molecule.max_shift
    defocus = float(rng.uniform(*settings.defocus))
    if spec.snr is None:
        low, high = np.log(settings.snr[0]), np.log(settings.snr[1])
        snr = float(np.exp(rng.uniform(min(low, high), max(low, high))))
    else:
        snr = spec.snr
    noise = rng.standard_normal((len(geometry.angles), geometry.box, geometry.box), dtype=np.float32)
    return _Draws(rotation, shift, defocus, snr, noise)


def _envelope(extras: Sequence[Nuisances], geometry: Geometry) -> Envelope | None:
    """The tilt images' signal filter, or None when every sample leaves B-factor, MTF and dose off."""
    if all(e.b_factor == 0 and e.detector_mtf >= 1 and e.dose == 0 for e in extras):
        return None
    doses = None
    if any(e.dose > 0 for e in extras):
        doses = [nz.dose_symmetric_doses(geometry.angles, e.dose) for e in extras]
    b_factors, mtfs = [e.b_factor for e in extras], [e.detector_mtf for e in extras]
    return lambda frequency: nz.signal_envelope(frequency, geometry.voxel_size, b_factors, mtfs, doses)


def _finish(image: np.ndarray, extra: Nuisances, box: int) -> np.ndarray:
    """Reconstruction -> output: resampled to the output grid, background added, contrast, z-score."""
    from voxuda_cli.resample import fourier_resample

    if image.shape[0] != box:
        image = fourier_resample(image, (box,) * 3)
    if extra.background_field is not None:
        image = image + np.float32(extra.background * image.std()) * extra.background_field
    return zscore(-image if extra.inverted else image)


def simulate_batch(
    specs: Sequence[SampleSpec], molecules: Sequence[Molecule], settings: SimulationSettings
) -> list[SimulatedSample]:
    """Simulate consecutive samples together (one tilt geometry and simulation grid)."""
    from voxuda_cli.simulate.imaging import Optics, image_batch

    geometry = batch_geometry(specs[0].index, settings)
    draws = [_draw(spec, molecules[spec.molecule], settings, geometry) for spec in specs]
    templates = [m.template for m in molecules]
    pool = [i for i, m in enumerate(molecules) if m.neighbour]
    radii = [m.template.radius for m in molecules]
    placed = [Placement(spec.molecule, d.rotation, d.shift) for spec, d in zip(specs, draws)]
    extras = [draw_nuisances(spec.index, p, radii, pool, settings) for spec, p in zip(specs, placed)]
    levels, empty = [m.iso_level for m in molecules], [is_empty(spec.index, settings) for spec in specs]
    scenes = [
        render_scene(templates, levels, [p, *e.neighbours], settings, gone) for p, e, gone in zip(placed, extras, empty)
    ]
    imaged = [imaged_density(scene[0], e.membranes, geometry) for e, scene in zip(extras, scenes)]
    snr_densities = None
    if any(empty):  # the noise an empty box's molecule would have set: its SNR is of the whole scene
        snr_densities = np.stack([
            imaged_density(scene[0] + render_molecule(templates[p.molecule], p, settings.box, settings.voxel_size),
                           e.membranes, geometry) if gone else image
            for p, e, gone, scene, image in zip(placed, extras, empty, scenes, imaged)
        ])  # fmt: skip
    noise = np.stack([d.noise for d in draws], axis=1)
    slopes, mtfs = np.array([e.noise_slope for e in extras]), np.array([e.detector_mtf for e in extras])
    if np.any(slopes != 0) or np.any(mtfs < 1):
        noise = nz.shape_noise(noise, slopes, mtfs)
    optics = Optics(
        settings.voltage, settings.spherical_aberration, settings.amplitude_contrast, settings.ctf_correction
    )
    result = image_batch(
        np.stack(imaged),
        np.array([d.defocus for d in draws]),
        np.array([d.snr for d in draws]),
        noise,
        geometry.angles,
        geometry.voxel_size,
        optics,
        _envelope(extras, geometry),
        snr_densities,
    )
    return [
        SimulatedSample(
            name=spec.name,
            class_name=molecules[spec.molecule].pdb_id,
            image=_finish(result.images[i], extras[i], settings.box),
            density=scenes[i][0],
            mask=scenes[i][1],
            params=_params(draws[i], extras[i], molecules[spec.molecule], geometry, empty[i]),
        )
        for i, spec in enumerate(specs)
    ]


def _params(draw: _Draws, extra: Nuisances, molecule: Molecule, geometry: Geometry, empty: bool) -> dict[str, Any]:
    angles = geometry.angles
    return {
        "snr": draw.snr,
        "defocus": draw.defocus,
        "tilt_min": float(angles[0]),
        "tilt_max": float(angles[-1]),
        "tilt_step": float(angles[1] - angles[0]) if len(angles) > 1 else 0.0,
        "rotation": draw.rotation,
        "shift": draw.shift,
        "iso_level": molecule.iso_level,
        "mass": molecule.template.mass,
        "neighbours": len(extra.neighbours),
        "membranes": len(extra.membranes),
        "background": extra.background,
        "noise_slope": extra.noise_slope,
        "b_factor": extra.b_factor,
        "detector_mtf": extra.detector_mtf,
        "dose": extra.dose,
        "inverted": float(extra.inverted),
        "sim_voxel_size": geometry.voxel_size,
        "empty": float(empty),
    }


@contextlib.contextmanager
def torch_single_thread() -> Iterator[None]:
    """One torch thread inside the block (bit-identical results whatever the worker count)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


_WORKER_STATE: dict[str, Any] = {}


def _init_worker(molecules: list[Molecule], settings: SimulationSettings) -> None:
    import torch

    torch.set_num_threads(1)
    _WORKER_STATE["molecules"] = molecules
    _WORKER_STATE["settings"] = settings


def _work(specs: list[SampleSpec]) -> list[SimulatedSample]:
    return simulate_batch(specs, _WORKER_STATE["molecules"], _WORKER_STATE["settings"])


def _batches(specs: Sequence[SampleSpec]) -> list[list[SampleSpec]]:
    return [list(specs[start : start + BATCH_SIZE]) for start in range(0, len(specs), BATCH_SIZE)]


def iter_samples(
    settings: SimulationSettings,
    molecules: Sequence[Molecule] | None = None,
    specs: Sequence[SampleSpec] | None = None,
) -> Iterator[SimulatedSample]:
    """Yield simulated samples in order, using ``settings.workers`` processes.

    At most a few batches per worker are in flight, so memory does not grow with the sample count.
    """
    molecules = list(molecules) if molecules is not None else prepare_molecules(settings)
    specs = list(specs) if specs is not None else plan_samples(settings, molecules)
    batches = _batches(specs)
    if settings.workers == 1 or len(batches) == 1:
        with torch_single_thread():
            for batch in batches:
                yield from simulate_batch(batch, molecules, settings)
        return
    import multiprocessing

    # spawn, not fork: a forked child of a process that has run torch's thread pool can hang
    context = multiprocessing.get_context("spawn")
    workers = min(settings.workers, len(batches))
    with context.Pool(workers, initializer=_init_worker, initargs=(molecules, settings)) as pool:
        pending: deque[Any] = deque()
        queue = iter(batches)
        for batch in queue:
            pending.append(pool.apply_async(_work, (batch,)))
            if len(pending) >= workers * _IN_FLIGHT_PER_WORKER:
                break
        while pending:
            done = pending.popleft().get()
            next_batch = next(queue, None)
            if next_batch is not None:
                pending.append(pool.apply_async(_work, (next_batch,)))
            yield from done


def molecule_summary(molecules: Sequence[Molecule]) -> list[dict[str, Any]]:
    return [
        {
            "pdb_id": m.pdb_id,
            "mass_kda": round(m.template.mass / 1e3, 1),
            "radius_a": round(m.template.radius, 1),
            "beads": m.template.n_beads,
            "iso_level": round(m.iso_level, 1),
            "source": m.template.source,
        }
        for m in molecules
    ]


def simulate_dataset(
    output: Path | str,
    settings: SimulationSettings,
    provenance_json: str | None = None,
    preview: Path | str | None = None,
    on_sample: Progress | None = None,
    preview_rows: int = 4,
    molecules: Sequence[Molecule] | None = None,
) -> dict[str, Any]:
    """Simulate every sample of ``settings`` into a dataset file (streamed, written atomically).

    Bad settings or structures raise VoxudaInputError before anything is written. Returns a summary.
    """
    from voxuda_cli.io.dataset import DatasetWriter

    start = time.perf_counter()
    molecules = list(molecules) if molecules is not None else prepare_molecules(settings)
    specs = plan_samples(settings, molecules)
    attrs: dict[str, Any] = {
        "params_doc": json.dumps(PARAMS_DOC),
        "molecules": json.dumps(molecule_summary(molecules)),
    }
    if provenance_json is not None:
        attrs["provenance"] = provenance_json
    shown: list[SimulatedSample] = []
    with DatasetWriter(output, (settings.box,) * 3, settings.voxel_size, settings.kind, attrs) as writer:
        for sample in iter_samples(settings, molecules, specs):
            writer.append(
                sample.image,
                sample.name,
                mask=sample.mask,
                density=sample.density,
                class_name=sample.class_name,
                params=sample.params,
            )
            _keep_for_preview(shown, sample, preview_rows)
            if on_sample is not None:
                on_sample(1, sample.name)
    seconds = time.perf_counter() - start
    if preview is not None:
        from voxuda_cli.simulate import preview as previews

        if previews.families_on(settings):
            previews.save_nuisance_preview(preview, settings, molecules, specs, simulate_batch, torch_single_thread)
        else:
            previews.save_sample_preview(preview, shown)
    return {
        "output": str(output),
        "samples": len(specs),
        "kind": settings.kind,
        "box": settings.box,
        "voxel_size": settings.voxel_size,
        "tilts": settings.n_tilts,
        "workers": settings.workers,
        "seconds": round(seconds, 2),
        "samples_per_second": round(len(specs) / seconds, 2),
        "molecules": molecule_summary(molecules),
        "preview": str(preview) if preview is not None else None,
    }


def _keep_for_preview(shown: list[SimulatedSample], sample: SimulatedSample, rows: int) -> None:
    """The first sample of each class, up to ``rows`` of them."""
    if len(shown) < rows and all(s.class_name != sample.class_name for s in shown):
        shown.append(sample)


def simulate_in_memory(settings: SimulationSettings) -> Any:
    """A small simulated set as an in-memory ``Dataset`` (for tests and notebooks; no file)."""
    from voxuda_cli.io.dataset import Dataset

    samples = list(iter_samples(settings))
    params = {key: np.stack([np.asarray(s.params[key], dtype=np.float32) for s in samples]) for key in PARAMS_DOC}
    return Dataset(
        images=np.stack([s.image for s in samples]),
        names=[s.name for s in samples],
        voxel_size=settings.voxel_size,
        kind=settings.kind,
        masks=np.stack([s.mask for s in samples]),
        classes=[s.class_name for s in samples],
        density=np.stack([s.density for s in samples]),
        params=params,
    )
