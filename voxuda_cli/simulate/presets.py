"""Settings of ``voxuda simulate-prep``: one dataclass (the one source of defaults) and its presets.

The dataclass defaults are the ``source`` preset, the paper's source set: three built-in molecules
(3jb9 spliceosome 1.15 MDa, 4v1w apoferritin 432 kDa, 7pbl RuvAB-Holliday junction 209 kDa: a
large, a hollow-symmetric and a small, elongated complex, standing in for the paper's AITom
molecules, which are not available), SNR 0.03 and 0.05 with 500 samples each per molecule
(3 x 2 x 500 = 3,000 samples, the paper's source-set size), tilts -60..60 every 3 degrees,
defocus 2-5 um, 32^3 at 10 A (METHOD.md).

The ``target`` preset builds a labelled stand-in for real data: three *other* molecules
(6qt9 SH1 capsid unit 560 kDa, 4jsv mTOR 293 kDa, 7cth dengue E + scFv 220 kDa), SNR drawn per
sample log-uniform in 0.01-0.1 (real tomograms vary, METHOD.md), a narrower tilt range with a
finer step (-50..50 every 2 degrees, as often collected on thicker samples: a wider missing wedge)
and more defocus (3-6 um: the first CTF zero moves from ~26 A to ~33 A); output ``kind`` "target".

Resolution order: dataclass default < preset < ``--config`` file < command-line options.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voxuda_cli import fields
from voxuda_cli.errors import VoxudaInputError
from voxuda_cli.fields import setting

SNR_DISTRIBUTIONS = ("levels", "log-uniform")
CTF_CORRECTIONS = ("none", "phase-flip")
KINDS = ("source", "target")
MIN_BOX = 8
PRESET_NAMES = ("source", "target")


def split_list(values: list[str]) -> list[str]:
    """Repeated options and comma-separated lists both work: --snr 0.03,0.05 == --snr 0.03 --snr 0.05."""
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def parse_floats(option: str, values: list[str]) -> tuple[float, ...]:
    parts = split_list(values)
    try:
        return tuple(float(p) for p in parts)
    except ValueError as exc:
        raise VoxudaInputError(f"{option} {' '.join(parts)}: not numbers ({exc})") from exc


@dataclass
class SimulationSettings:
    """Every option of ``voxuda simulate-prep``; the defaults are the ``source`` preset."""

    preset: str = setting(
        "source", "Starting values that options then override: {choices}.", choices=lambda: PRESET_NAMES
    )
    structures: tuple[str, ...] = setting(
        ("3jb9", "4v1w", "7pbl"),
        "Built-in PDB ids or PDB/mmCIF files (gzip ok); repeat or comma.",
        cli_type=list[str],
        parse=lambda values: tuple(split_list(values)),
    )
    n_per_structure: int = setting(500, "Samples per structure and SNR level (per structure if log-uniform).")
    snr: tuple[float, ...] = setting(
        (0.03, 0.05),
        "SNR levels (or low,high for log-uniform); repeat or comma.",
        cli_type=list[str],
        parse=lambda values: parse_floats("--snr", values),
    )
    snr_distribution: str = setting(
        "levels", "{choices} (log-uniform: one draw per sample).", choices=lambda: SNR_DISTRIBUTIONS
    )
    box: int = setting(32, "Subtomogram edge (voxels).")
    voxel_size: float = setting(10.0, "Voxel size (A).")
    tilt_range: tuple[float, float] = setting((-60.0, 60.0), "Min and max tilt (degrees).")
    tilt_step: float = setting(3.0, "Tilt step (degrees).")
    defocus: tuple[float, float] = setting((2.0, 5.0), "Defocus range (um underfocus), uniform per sample.")
    voltage: float = setting(300.0, "Voltage (kV).")
    spherical_aberration: float = setting(2.7, "Cs (mm).")
    amplitude_contrast: float = setting(0.07, "Amplitude contrast fraction.")
    # none: as AITom, the paper's simulator
    ctf_correction: str = setting("none", "{choices}.", choices=lambda: CTF_CORRECTIONS)
    max_shift: float = setting(2.0, "Random shift per axis (voxels; less if the molecule would leave the box).")
    seed: int = fields.seed()
    workers: int = setting(1, "Processes (results do not depend on it).")
    kind: str = setting("source", "Dataset kind: {choices}.", choices=lambda: KINDS)
    mask_threshold: float = setting(300.0, "Import: greyscale mask > this is 1 (paper: 300).")
    crop: bool = setting(False, "Import: centre-crop to --box, not resize.")
    invert: bool = fields.invert(" (import)")

    def __post_init__(self) -> None:
        self.structures = tuple(str(s) for s in self.structures)
        self.snr = tuple(float(s) for s in self.snr)
        self.tilt_range = (float(self.tilt_range[0]), float(self.tilt_range[1]))
        self.defocus = (float(self.defocus[0]), float(self.defocus[1]))
        self.validate()

    def validate(self) -> None:
        """Raise VoxudaInputError naming the first bad option."""
        _choice("--preset", self.preset, tuple(PRESET_NAMES))
        _choice("--snr-distribution", self.snr_distribution, SNR_DISTRIBUTIONS)
        _choice("--ctf-correction", self.ctf_correction, CTF_CORRECTIONS)
        _choice("--kind", self.kind, KINDS)
        if not self.structures:
            raise VoxudaInputError("--structures: no structure given; pass PDB/mmCIF files or built-in ids")
        if not self.snr:
            raise VoxudaInputError("--snr: no value given")
        for value in self.snr:
            if not (math.isfinite(value) and value > 0):
                raise VoxudaInputError(f"--snr {value:g}: must be a positive number (var(signal) / var(noise))")
        if self.snr_distribution == "levels" and len({f"{v:g}" for v in self.snr}) != len(self.snr):
            raise VoxudaInputError(f"--snr {' '.join(f'{v:g}' for v in self.snr)}: a level is repeated; give each once")
        if self.snr_distribution == "log-uniform" and len(self.snr) != 2:
            raise VoxudaInputError(
                f"--snr {' '.join(f'{v:g}' for v in self.snr)}: --snr-distribution log-uniform needs two values "
                "(low and high); pass two, or --snr-distribution levels"
            )
        if self.n_per_structure < 1:
            raise VoxudaInputError(f"--n-per-structure {self.n_per_structure}: must be at least 1")
        if self.box < MIN_BOX:
            raise VoxudaInputError(f"--box {self.box}: must be at least {MIN_BOX} voxels")
        _positive("--voxel-size", self.voxel_size)
        _positive("--tilt-step", self.tilt_step)
        low, high = self.tilt_range
        if not (-90.0 < low < high < 90.0):
            raise VoxudaInputError(f"--tilt-range {low:g} {high:g}: need -90 < min < max < 90 degrees")
        if not 0.0 < self.defocus[0] <= self.defocus[1]:
            raise VoxudaInputError(
                f"--defocus {self.defocus[0]:g} {self.defocus[1]:g}: need 0 < min <= max (um underfocus)"
            )
        _positive("--voltage", self.voltage)
        if self.spherical_aberration < 0:
            raise VoxudaInputError(f"--spherical-aberration {self.spherical_aberration:g}: must be >= 0 mm")
        if not 0.0 <= self.amplitude_contrast < 1.0:
            raise VoxudaInputError(f"--amplitude-contrast {self.amplitude_contrast:g}: must be in [0, 1)")
        if self.max_shift < 0:
            raise VoxudaInputError(f"--max-shift {self.max_shift:g}: must be >= 0 voxels")
        if self.workers < 1:
            raise VoxudaInputError(f"--workers {self.workers}: must be at least 1")
        if not math.isfinite(self.mask_threshold):
            raise VoxudaInputError(f"--mask-threshold {self.mask_threshold}: must be a number")

    @property
    def n_tilts(self) -> int:
        from voxuda_cli.simulate.imaging import tilt_angles

        return len(tilt_angles(self.tilt_range, self.tilt_step))

    @property
    def n_samples(self) -> int:
        levels = len(self.snr) if self.snr_distribution == "levels" else 1
        return len(self.structures) * levels * self.n_per_structure


def _choice(option: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise VoxudaInputError(f"{option} {value}: unknown; use one of {', '.join(choices)}")


def _positive(option: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise VoxudaInputError(f"{option} {value}: must be a positive number")


def preset(name: str) -> SimulationSettings:
    """The preset's settings (a fresh instance)."""
    if name == "source":
        return SimulationSettings()
    if name == "target":
        return SimulationSettings(
            preset="target",
            structures=("6qt9", "4jsv", "7cth"),
            snr=(0.01, 0.1),
            snr_distribution="log-uniform",
            tilt_range=(-50.0, 50.0),
            tilt_step=2.0,
            defocus=(3.0, 6.0),
            kind="target",
        )
    raise VoxudaInputError(f"--preset {name}: unknown; use one of {', '.join(PRESET_NAMES)}")


def resolve_simulation_settings(
    config: Path | None = None, section: str = "simulate-prep", **cli_values: Any
) -> SimulationSettings:
    """Defaults < preset < config file < options given (``None`` = not given)."""
    from voxuda_cli.config import load_config, resolve_settings

    # resolve_settings validates config keys and converts TOML lists to tuples
    merged = resolve_settings(SimulationSettings, config, section, **cli_values)
    given = {key for key, value in cli_values.items() if value is not None}
    if config is not None:
        given |= {key.replace("-", "_") for key in load_config(config, section)}
    base = preset(merged.preset)
    return dataclasses.replace(base, **{key: getattr(merged, key) for key in given})
