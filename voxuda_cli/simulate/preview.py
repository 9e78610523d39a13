"""``--preview`` montages: what the network is taught, one row per sample or per nuisance.

Without nuisances the montage is the first sample of each class (image, density, mask). With
nuisances (``crowded``, ``randomized`` or options) each row turns on one nuisance family alone, at
the run's ranges, on the same few samples at SNR 1 (so the nuisance, not the noise, is what shows),
and a last row has all of them at the run's SNR (with ``--nuisance-probability`` < 1: the run's own
draws, each family on or off as in the file): image and mask for each sample.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from voxuda_cli.simulate.presets import SimulationSettings
from voxuda_cli.simulate.scene import FAMILIES

if TYPE_CHECKING:
    from voxuda_cli.simulate.simulator import Molecule, SampleSpec, SimulatedSample

PREVIEW_SNR = 1.0


def _default(name: str) -> object:
    return SimulationSettings.__dataclass_fields__[name].default


def families_on(settings: SimulationSettings) -> list[str]:
    """The nuisance families the settings switch on."""
    return [label for label, names in FAMILIES.items() if any(getattr(settings, n) != _default(n) for n in names)]


def family_settings(settings: SimulationSettings, label: str | None) -> SimulationSettings:
    """Every nuisance off but family ``label`` (None: all off), at SNR 1; inversion shown on every sample."""
    values: dict[str, Any] = {n: _default(n) for names in FAMILIES.values() for n in names}
    if label is not None:
        values.update({n: getattr(settings, n) for n in FAMILIES[label]})
        if label == "contrast inversion":
            values["contrast_inversion"] = 1.0
    # probability 1: the row's family is on in every sample it shows
    return dataclasses.replace(
        settings, snr=(PREVIEW_SNR,), snr_distribution="levels", nuisance_probability=1.0, **values
    )


def preview_specs(specs: Sequence[SampleSpec], count: int) -> list[SampleSpec]:
    """The first sample of each class, up to ``count``."""
    chosen: list[SampleSpec] = []
    for spec in specs:
        if len(chosen) < count and all(c.molecule != spec.molecule for c in chosen):
            chosen.append(spec)
    return chosen


def save_nuisance_preview(
    path: Path | str,
    settings: SimulationSettings,
    molecules: Sequence[Molecule],
    specs: Sequence[SampleSpec],
    simulate_batch: Callable[..., list[SimulatedSample]],
    single_thread: Callable[[], AbstractContextManager[Any]],
    count: int = 3,
) -> Path:
    """One row per nuisance family alone (plus none and all), image and mask of ``count`` samples.

    ``simulate_batch`` and ``single_thread`` are simulator.py's (passed in: the simulator calls this
    module, so it does not import the simulator back).
    """
    from voxuda_cli.plots import save_montage

    chosen = [dataclasses.replace(spec, snr=PREVIEW_SNR) for spec in preview_specs(specs, count)]
    rows: list[tuple[str, list[SimulatedSample]]] = []
    with single_thread():
        for label in [None, *families_on(settings)]:
            samples = [simulate_batch([spec], molecules, family_settings(settings, label))[0] for spec in chosen]
            rows.append((f"{label} alone" if label else f"no nuisance (SNR {PREVIEW_SNR:g})", samples))
        everything = [simulate_batch([spec], molecules, settings)[0] for spec in preview_specs(specs, count)]
        chance = settings.nuisance_probability
        rows.append(
            ("all nuisances, the run's SNR" if chance >= 1 else f"as run (SNR, each on p={chance:g})", everything)
        )
    columns: dict[str, list] = {}
    for index, spec in enumerate(chosen):
        columns[f"{spec.name} image"] = [samples[index].image for _, samples in rows]
        columns[f"{spec.name} mask"] = [samples[index].mask for _, samples in rows]
    return save_montage(
        path, columns, row_labels=[label for label, _ in rows], title="simulate-prep: each nuisance (central z slices)"
    )


def save_sample_preview(path: Path | str, samples: Sequence[SimulatedSample]) -> Path:
    """Montage of central slices: image, density, mask, one row per sample."""
    from voxuda_cli.plots import save_montage

    return save_montage(
        path,
        {
            "image": [s.image for s in samples],
            "density": [s.density for s in samples],
            "mask": [s.mask for s in samples],
        },
        row_labels=[s.name for s in samples],
        title="simulate-prep: central z slices",
    )
