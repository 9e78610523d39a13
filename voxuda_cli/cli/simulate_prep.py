"""Make a labelled source set: simulated subtomograms of atomic models, or import your own simulations.

Simulation (METHOD.md): atomic model -> mass density -> random rotation and shift -> tilt series
(Fourier-slice projection) -> CTF -> noise at the requested SNR (var(signal)/var(noise) of the
reconstruction) -> weighted back-projection -> 32^3 at 10 A. Writes /images (z-scored, protein
bright), /masks (iso-surface enclosing mass / 0.81 A^3), /density, /names, /classes and
per-sample /params. Built-in molecules (by PDB id): 3jb9 3p3w 4jsv 4v1w 6qt9 7cth 7pbl; or pass
PDB/mmCIF files (gzip ok). --preset source (default) is the paper's 3,000-sample set; --preset
target draws SNR per sample (0.01-0.1) on three other molecules, for benchmarks with known masks.

Import mode (--import-images with --import-masks): greyscale masks become binary at
--mask-threshold (paper: 300), then images and masks are resized (or --crop'ed) to --box.

\b
Examples:
  voxuda simulate-prep source.h5 --workers 2 --preview source.png
  voxuda simulate-prep target.h5 --preset target --n-per-structure 200
  voxuda simulate-prep mine.h5 --structures my_complex.cif.gz,4v1w --snr 0.05 --n-per-structure 100
  voxuda simulate-prep imported.h5 --import-images sims/ --import-masks sims_masks/ --box 32
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from voxuda_cli.cli.common import ConfigOpt, JsonOpt, VerboseOpt, cli_errors, emit, fmt, progress_bar, setup_logging
from voxuda_cli.config import describe
from voxuda_cli.errors import VoxudaInputError
from voxuda_cli.simulate.presets import SimulationSettings as S

NAME = "simulate-prep"


def _split(values: list[str] | None) -> list[str] | None:
    """Repeated options and comma-separated lists both work: --snr 0.03,0.05 == --snr 0.03 --snr 0.05."""
    if values is None:
        return None
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def _floats(option: str, values: list[str] | None) -> tuple[float, ...] | None:
    parts = _split(values)
    if parts is None:
        return None
    try:
        return tuple(float(p) for p in parts)
    except ValueError as exc:
        raise VoxudaInputError(f"{option} {' '.join(parts)}: not numbers ({exc})") from exc


def command(
    output_arg: Annotated[Path | None, typer.Argument(metavar="OUTPUT", help="Output HDF5 dataset.")] = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Output HDF5 dataset (or as argument).")] = None,
    preset: Annotated[str | None, typer.Option(help=describe(S, "preset", "source | target: starting values."))] = None,
    structures: Annotated[
        list[str] | None,
        typer.Option(help=describe(S, "structures", "Built-in PDB ids or PDB/mmCIF files (gzip ok); repeat or comma.")),
    ] = None,
    n_per_structure: Annotated[
        int | None,
        typer.Option(
            help=describe(S, "n_per_structure", "Samples per structure and SNR level (per structure if log-uniform).")
        ),
    ] = None,
    snr: Annotated[
        list[str] | None,
        typer.Option(help=describe(S, "snr", "SNR levels (or low,high for log-uniform); repeat or comma.")),
    ] = None,
    snr_distribution: Annotated[
        str | None,
        typer.Option(help=describe(S, "snr_distribution", "levels | log-uniform (one draw per sample).")),
    ] = None,
    box: Annotated[int | None, typer.Option(help=describe(S, "box", "Subtomogram edge (voxels)."))] = None,
    voxel_size: Annotated[float | None, typer.Option(help=describe(S, "voxel_size", "Voxel size (A)."))] = None,
    tilt_range: Annotated[
        tuple[float, float] | None, typer.Option(help=describe(S, "tilt_range", "Min and max tilt (degrees)."))
    ] = None,
    tilt_step: Annotated[float | None, typer.Option(help=describe(S, "tilt_step", "Tilt step (degrees)."))] = None,
    defocus: Annotated[
        tuple[float, float] | None,
        typer.Option(help=describe(S, "defocus", "Defocus range (um underfocus), uniform per sample.")),
    ] = None,
    voltage: Annotated[float | None, typer.Option(help=describe(S, "voltage", "Voltage (kV)."))] = None,
    spherical_aberration: Annotated[
        float | None, typer.Option(help=describe(S, "spherical_aberration", "Cs (mm)."))
    ] = None,
    amplitude_contrast: Annotated[
        float | None, typer.Option(help=describe(S, "amplitude_contrast", "Amplitude contrast fraction."))
    ] = None,
    ctf_correction: Annotated[
        str | None, typer.Option(help=describe(S, "ctf_correction", "none | phase-flip."))
    ] = None,
    max_shift: Annotated[
        float | None,
        typer.Option(help=describe(S, "max_shift", "Random shift per axis (voxels; less if the molecule would leave)")),
    ] = None,
    seed: Annotated[int | None, typer.Option(help=describe(S, "seed", "Random seed (same seed, same bytes)."))] = None,
    workers: Annotated[
        int | None, typer.Option(help=describe(S, "workers", "Processes (results do not depend on it)."))
    ] = None,
    kind: Annotated[str | None, typer.Option(help=describe(S, "kind", "Dataset kind: source | target."))] = None,
    import_images: Annotated[
        Path | None, typer.Option(help="Import mode: images (MRC folder/file or HDF5 /images). [default: off]")
    ] = None,
    import_masks: Annotated[
        Path | None,
        typer.Option(help="Import mode: greyscale masks (MRC folder/file or HDF5 /density, /masks or /images)."),
    ] = None,
    mask_threshold: Annotated[
        float | None, typer.Option(help=describe(S, "mask_threshold", "Import: greyscale mask > this is 1."))
    ] = None,
    crop: Annotated[
        bool | None, typer.Option("--crop/--no-crop", help=describe(S, "crop", "Import: centre-crop, not resize."))
    ] = None,
    invert: Annotated[
        bool | None, typer.Option("--invert/--no-invert", help=describe(S, "invert", "Import: flip dark protein."))
    ] = None,
    preview: Annotated[
        Path | None, typer.Option(help="PNG montage of central slices (image, density, mask). [default: off]")
    ] = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    setup_logging(verbose)
    with cli_errors(NAME):
        from rich.table import Table

        from voxuda_cli.config import settings_to_dict
        from voxuda_cli.simulate.presets import resolve_simulation_settings

        target = _output_path(output_arg, output)
        importing = import_images is not None or import_masks is not None
        settings = resolve_simulation_settings(
            config,
            NAME,
            preset=preset,
            structures=tuple(_split(structures)) if structures else None,
            n_per_structure=n_per_structure,
            snr=_floats("--snr", snr),
            snr_distribution=snr_distribution,
            box=box,
            voxel_size=voxel_size,
            tilt_range=tilt_range,
            tilt_step=tilt_step,
            defocus=defocus,
            voltage=voltage,
            spherical_aberration=spherical_aberration,
            amplitude_contrast=amplitude_contrast,
            ctf_correction=ctf_correction,
            max_shift=max_shift,
            seed=seed,
            workers=workers,
            kind=kind,
            mask_threshold=mask_threshold,
            crop=crop,
            invert=invert,
        )
        options = settings_to_dict(settings)
        if importing:
            summary = _run_import(target, import_images, import_masks, settings, options, preview)
        else:
            summary = _run_simulation(target, settings, options, preview)
        table = Table(title=f"simulate-prep: {summary['output']}")
        if "molecules" in summary:
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
        else:
            for key in ("samples", "box", "voxel_size", "mask_threshold", "mean_foreground_fraction"):
                table.add_column(key, justify="right")
            table.add_row(
                *(
                    str(summary[k])
                    for k in ("samples", "box", "voxel_size", "mask_threshold", "mean_foreground_fraction")
                )
            )
        emit(summary, as_json, table)


def _output_path(argument: Path | None, option: Path | None) -> Path:
    if argument is not None and option is not None and argument != option:
        raise VoxudaInputError(f"{argument} and -o {option}: give the output once (argument or -o)")
    path = argument or option
    if path is None:
        raise VoxudaInputError("no output given; pass OUTPUT.h5 (or -o OUTPUT.h5)")
    return path


def _run_simulation(output: Path, settings: S, options: dict, preview: Path | None) -> dict:  # type: ignore[type-arg]
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
            on_sample=lambda sample: bar.update(task, advance=1, status=sample.name),
            molecules=molecules,
        )


def _run_import(
    output: Path,
    images: Path | None,
    masks: Path | None,
    settings: S,
    options: dict,
    preview: Path | None,  # type: ignore[type-arg]
) -> dict:  # type: ignore[type-arg]
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
            on_sample=lambda sample: bar.update(task, advance=1, status=sample.name),
        )
