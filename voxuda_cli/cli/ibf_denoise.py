"""Denoise volumes with the improved bilateral filter (IBF), the plain bilateral filter (BF) or NGM.

One MRC file in gives one MRC file out (voxel size, origin and labels kept), of any size: a whole
tomogram streams through memory maps in z-chunks (--chunk rows, or chosen from free memory), with
a halo, so the result equals filtering it in one piece. Several MRC files (or a folder) go to an
output folder, same file names. One HDF5 dataset gives a dataset: /images denoised, everything
else carried over.

Scale: each volume is z-scored (its own mean and std; sigma_r is in those units), filtered, and the
z-scoring undone: the output is on the INPUT'S scale. --no-zscore filters the raw values
(sigma_r then in raw units). IBF/BF use a 3x3x3 window with replicate borders; NGM (the volume less
its Fourier high-pass residual) needs the whole volume in memory.

Example: voxuda ibf-denoise tomo.mrc -o tomo_ibf.mrc --preview tomo_ibf.png
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from voxuda_cli.cli.common import (
    ConfigOpt,
    DeviceOpt,
    JsonOpt,
    VerboseOpt,
    cli_errors,
    emit,
    progress_bar,
    setup_logging,
)
from voxuda_cli.config import describe
from voxuda_cli.filters import DenoiseSettings
from voxuda_cli.filters.denoisers import names as denoiser_names

NAME = "ibf-denoise"
_PREVIEW_ROWS = 4


def command(
    inputs: Annotated[list[Path], typer.Argument(help="MRC files, folders of MRC files, or one HDF5 dataset.")],
    output: Annotated[
        Path, typer.Option("-o", "--output", help="Output: an MRC file (one MRC in), a folder, or a .h5 dataset.")
    ],
    method: Annotated[
        str | None,
        typer.Option("--method", help=describe(DenoiseSettings, "method", f"Denoiser: {', '.join(denoiser_names())}.")),
    ] = None,
    sigma_d: Annotated[
        float | None,
        typer.Option("--sigma-d", help=describe(DenoiseSettings, "sigma_d", "Spatial (domain) sigma, voxels.")),
    ] = None,
    sigma_r: Annotated[
        float | None,
        typer.Option("--sigma-r", help=describe(DenoiseSettings, "sigma_r", "Range sigma (z-score units).")),
    ] = None,
    keep_rate: Annotated[
        float | None,
        typer.Option(
            "--keep-rate",
            help=describe(
                DenoiseSettings,
                "keep_rate",
                "NGM: highest-frequency fraction of Fourier coefficients taken as noise (and removed).",
            ),
        ),
    ] = None,
    chunk: Annotated[
        int | None,
        typer.Option("--chunk", help="z-rows per chunk for big volumes. [default: chosen from free memory]"),
    ] = None,
    zscore: Annotated[
        bool | None,
        typer.Option(
            "--zscore/--no-zscore",
            help=describe(DenoiseSettings, "zscore", "Z-score each volume before filtering (output on input scale)."),
        ),
    ] = None,
    preview: Annotated[Path | None, typer.Option("--preview", help="PNG of central slices, before and after.")] = None,
    device: DeviceOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    setup_logging(verbose)
    with cli_errors(NAME):
        import time

        from rich.table import Table

        from voxuda_cli.cli.common import fmt
        from voxuda_cli.config import resolve_settings, settings_to_dict
        from voxuda_cli.device import resolve_device
        from voxuda_cli.filters import apply
        from voxuda_cli.io.dataset import provenance

        settings = resolve_settings(
            DenoiseSettings,
            config,
            NAME,
            method=method,
            sigma_d=sigma_d,
            sigma_r=sigma_r,
            keep_rate=keep_rate,
            chunk=chunk,
            zscore=zscore,
        )
        settings.validate()
        torch_device = resolve_device(device or "auto")
        job = apply.plan_denoise(inputs, output)
        if job.mode != "dataset":
            apply.check_mrc_inputs(job.inputs)
        if preview is not None and preview.suffix.lower() != ".png":
            from voxuda_cli.errors import VoxudaInputError

            raise VoxudaInputError(f"--preview {preview}: give a .png file name")
        start = time.perf_counter()
        records = []
        with progress_bar() as bar:
            for path in job.inputs:
                task = bar.add_task(path.name, total=None, status=settings.method)

                def advance(done: int, total: int, task: int = task) -> None:
                    bar.update(task, completed=done, total=total)

                if job.mode == "dataset":
                    origin = provenance(NAME, settings_to_dict(settings), [str(p) for p in inputs])
                    records.append(apply.denoise_dataset(path, job.output, settings, torch_device, origin, advance))
                else:
                    records.append(apply.denoise_mrc(path, job.target(path), settings, torch_device, advance))
        if preview is not None:
            _save_preview(preview, job, settings.method)
        summary = {
            "mode": job.mode,
            "output": str(job.output),
            "settings": settings_to_dict(settings),
            "device": str(torch_device),
            "volumes": records,
            "seconds": round(time.perf_counter() - start, 3),
            "preview": str(preview) if preview is not None else None,
        }
        table = Table(title=f"ibf-denoise ({settings.method}) -> {job.output}")
        for column in ("input", "shape", "seconds", "Mvoxel/s", "output"):
            table.add_column(column, justify="right" if column in ("seconds", "Mvoxel/s") else "left")
        for record in records:
            shape = "x".join(str(n) for n in record["shape"])
            table.add_row(
                record["name"], shape, fmt(record["seconds"], 2), fmt(record["mvoxel_per_s"], 1), record["output"]
            )
        emit(summary, as_json, table)


def _save_preview(path: Path, job, method: str) -> None:  # type: ignore[no-untyped-def]
    """Central slices of up to four volumes (or dataset samples), input and denoised side by side."""
    from voxuda_cli.io.dataset import read_h5_dataset
    from voxuda_cli.io.mrc import read_mrc
    from voxuda_cli.plots import save_montage

    if job.mode == "dataset":
        before = read_h5_dataset(job.inputs[0])
        after = read_h5_dataset(job.output)
        names = before.names[:_PREVIEW_ROWS]
        columns = {"input": list(before.images[:_PREVIEW_ROWS]), method: list(after.images[:_PREVIEW_ROWS])}
    else:
        paths = job.inputs[:_PREVIEW_ROWS]
        names = [p.stem for p in paths]
        columns = {
            "input": [read_mrc(p, mmap=True, check=False).data for p in paths],
            method: [read_mrc(job.target(p), mmap=True, check=False).data for p in paths],
        }
    save_montage(path, columns, row_labels=names, title=f"ibf-denoise --method {method}: central slices")
