"""Make a labelled source set: simulated subtomograms of atomic models, or import your own simulations.

Simulation (METHOD.md): atomic model -> mass density -> random rotation and shift -> tilt series
(Fourier-slice projection) -> CTF -> noise at the requested SNR (var(signal)/var(noise) of the
reconstruction) -> weighted back-projection -> 32^3 at 10 A. Writes /images (z-scored, protein
bright), /masks (iso-surface enclosing mass / 0.81 A^3), /density, /names, /classes and
per-sample /params. Built-in molecules (by PDB id): 3jb9 3p3w 4jsv 4v1w 6qt9 7cth 7pbl; or pass
PDB/mmCIF files (gzip ok). --preset source (default) is the paper's 3,000-sample set; --preset
target draws SNR per sample (0.01-0.1) on three other molecules (the easy benchmark target);
--preset crowded adds neighbours, background, coloured noise, B-factor and a detector MTF (the
hard target); --preset randomized is a domain-randomised source (every nuisance but the MTF).
Masks: every molecule in the box at its own iso-surface, united; membranes are 0.

Import mode (--import-images with --import-masks): greyscale masks become binary at
--mask-threshold (paper: 300), then images and masks are resized (or --crop'ed) to --box.

\b
Examples:
  voxuda simulate-prep source.h5 --workers 2 --preview source.png
  voxuda simulate-prep target.h5 --preset target --n-per-structure 200
  voxuda simulate-prep random.h5 --preset randomized --workers 2 --preview nuisances.png
  voxuda simulate-prep mine.h5 --structures my_complex.cif.gz,4v1w --snr 0.05 --n-per-structure 100
  voxuda simulate-prep imported.h5 --import-images sims/ --import-masks sims_masks/ --box 32
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from voxuda_cli.cli.common import PreviewOpt, bar_progress, emit, fmt, progress_bar
from voxuda_cli.cli.options import param, settings_command
from voxuda_cli.errors import VoxudaInputError
from voxuda_cli.simulate.presets import SimulationSettings as S

NAME = "simulate-prep"
SETTINGS = S
_IMPORT_COLUMNS = ("samples", "box", "voxel_size", "mask_threshold", "mean_foreground_fraction")

OutputArg = Annotated[Path | None, typer.Argument(metavar="OUTPUT", help="Output HDF5 dataset.")]
OutputOpt = Annotated[Path | None, typer.Option("-o", "--output", help="Output HDF5 dataset (or as argument).")]
ImagesOpt = Annotated[
    Path | None, typer.Option(help="Import mode: images (MRC folder/file or HDF5 /images). [default: off]")
]
MasksOpt = Annotated[
    Path | None,
    typer.Option(help="Import mode: greyscale masks (MRC folder/file or HDF5 /density, /masks or /images)."),
]


def resolve(settings_cls: type, config: Path | None, name: str, values: dict[str, Any], extras: dict[str, Any]) -> S:
    from voxuda_cli.simulate.presets import resolve_simulation_settings

    return resolve_simulation_settings(config, name, **values)


def run(
    settings: S,
    output_arg: Path | None,
    output: Path | None,
    import_images: Path | None,
    import_masks: Path | None,
    preview: Path | None,
    as_json: bool,
) -> None:
    from voxuda_cli.config import settings_to_dict

    target = _output_path(output_arg, output)
    options = settings_to_dict(settings)
    if import_images is not None or import_masks is not None:
        summary = _run_import(target, import_images, import_masks, settings, options, preview)
    else:
        summary = _run_simulation(target, settings, options, preview)
    emit(summary, as_json, _table(summary))


command = settings_command(
    NAME,
    S,
    run,
    arguments=[param("output_arg", OutputArg, None), param("output", OutputOpt, None)],
    extras=[
        param("import_images", ImagesOpt, None),
        param("import_masks", MasksOpt, None),
        param("preview", PreviewOpt("central slices (image, density, mask; one row per nuisance if any)"), None),
    ],
    resolve=resolve,
)


def _table(summary: dict[str, Any]) -> Any:
    from rich.table import Table

    table = Table(title=f"simulate-prep: {summary['output']}")
    if "molecules" not in summary:
        for key in _IMPORT_COLUMNS:
            table.add_column(key, justify="right")
        table.add_row(*(str(summary[k]) for k in _IMPORT_COLUMNS))
        return table
    for column in ("molecule", "mass (kDa)", "radius (A)", "iso-level (Da/voxel)", "source"):
        table.add_column(column, justify="left" if column in ("molecule", "source") else "right")
    for molecule in summary["molecules"]:
        table.add_row(
            molecule["pdb_id"],
            fmt(molecule["mass_kda"], 1),
            fmt(molecule["radius_a"], 0),
            fmt(molecule["iso_level"], 0),
            molecule["source"],
        )
    table.caption = (
        f"{summary['samples']} samples, {summary['box']}^3 at {summary['voxel_size']:g} A, "
        f"{summary['tilts']} tilts, {summary['seconds']:.1f} s ({summary['samples_per_second']:.1f}/s)"
    )
    return table


def _output_path(argument: Path | None, option: Path | None) -> Path:
    if argument is not None and option is not None and argument != option:
        raise VoxudaInputError(f"{argument} and -o {option}: give the output once (argument or -o)")
    path = argument or option
    if path is None:
        raise VoxudaInputError("no output given; pass OUTPUT.h5 (or -o OUTPUT.h5)")
    return path


def _run_simulation(output: Path, settings: S, options: dict, preview: Path | None) -> dict:
    from voxuda_cli.io.dataset import provenance
    from voxuda_cli.simulate.simulator import prepare_molecules, simulate_dataset

    molecules = prepare_molecules(settings)  # bad structures fail here, before the progress bar
    origin = provenance(NAME, options, list(settings.structures))
    with progress_bar() as bar:
        task = bar.add_task("simulate", total=settings.n_samples, status="")
        return simulate_dataset(
            output,
            settings,
            provenance_json=origin,
            preview=preview,
            on_sample=bar_progress(bar, task),
            molecules=molecules,
        )


def _run_import(
    output: Path,
    images: Path | None,
    masks: Path | None,
    settings: S,
    options: dict,
    preview: Path | None,
) -> dict:
    from voxuda_cli.io.dataset import provenance
    from voxuda_cli.simulate.importing import import_dataset

    if images is None or masks is None:
        raise VoxudaInputError("import mode needs both --import-images and --import-masks")
    origin = provenance(
        NAME, {**options, "import_images": str(images), "import_masks": str(masks)}, [str(images), str(masks)]
    )
    with progress_bar() as bar:
        task = bar.add_task("import", total=None, status="")
        return import_dataset(
            output,
            images,
            masks,
            settings,
            provenance_json=origin,
            preview=preview,
            on_sample=bar_progress(bar, task),
        )
