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
from typing import Annotated, Any

import typer

from voxuda_cli.cli.common import PreviewOpt, bar_progress, emit, progress_bar
from voxuda_cli.cli.options import param, settings_command
from voxuda_cli.filters import DenoiseSettings

NAME = "ibf-denoise"
SETTINGS = DenoiseSettings
_PREVIEW_ROWS = 4

InputsArg = Annotated[list[Path], typer.Argument(help="MRC files, folders of MRC files, or one HDF5 dataset.")]
OutputOpt = Annotated[
    Path, typer.Option("-o", "--output", help="Output: an MRC file (one MRC in), a folder, or a .h5 dataset.")
]


# --method was this option's name before 2026-12 (it meant a denoiser here, a training method in train)
MethodOpt = Annotated[str | None, typer.Option("--method", hidden=True, help="Deprecated: --denoiser.")]


def run(
    settings: DenoiseSettings,
    inputs: list[Path],
    output: Path,
    preview: Path | None,
    method: str | None,
    as_json: bool,
) -> None:
    import dataclasses
    import logging
    import time

    if method is not None:
        logging.getLogger("voxuda").warning("ibf-denoise --method is deprecated; use --denoiser %s", method)
        settings = dataclasses.replace(settings, denoiser=method)

    from voxuda_cli.config import settings_to_dict
    from voxuda_cli.device import resolve_device
    from voxuda_cli.errors import VoxudaInputError
    from voxuda_cli.filters import apply
    from voxuda_cli.io.sources import check_voxel_sizes

    settings.validate()
    torch_device = resolve_device(settings.device)
    job = apply.plan_denoise(inputs, output, settings.shard, settings.skip_existing)
    if job.mode != "dataset":
        apply.check_mrc_inputs(job.inputs, settings.input_voxel_size)
    else:
        check_voxel_sizes(job.inputs, settings.input_voxel_size)
    if preview is not None and preview.suffix.lower() != ".png":
        raise VoxudaInputError(f"--preview {preview}: give a .png file name")
    start = time.perf_counter()
    records = _denoise_all(job, settings, torch_device, inputs)
    if preview is not None:
        _save_preview(preview, job, settings.denoiser)
    summary = {
        "mode": job.mode,
        "output": str(job.output),
        "settings": settings_to_dict(settings),
        "device": str(torch_device),
        "volumes": records,
        "seconds": round(time.perf_counter() - start, 3),
        "preview": str(preview) if preview is not None else None,
    }
    emit(summary, as_json, _table(job, settings, records))


command = settings_command(
    NAME,
    DenoiseSettings,
    run,
    arguments=[param("inputs", InputsArg), param("output", OutputOpt)],
    extras=[param("preview", PreviewOpt("central slices, before and after"), None), param("method", MethodOpt, None)],
)


def _denoise_all(job: Any, settings: DenoiseSettings, device: Any, inputs: list[Path]) -> list[dict[str, Any]]:
    from voxuda_cli.config import settings_to_dict
    from voxuda_cli.filters import apply
    from voxuda_cli.io.dataset import provenance

    records = []
    with progress_bar() as bar:
        for path in job.inputs:
            task = bar.add_task(path.name, total=None, status=settings.denoiser)
            advance = bar_progress(bar, task)

            if job.mode == "dataset":
                origin = provenance(NAME, settings_to_dict(settings), [str(p) for p in inputs])
                records.append(apply.denoise_dataset(path, job.output, settings, device, origin, advance))
            else:
                records.append(apply.denoise_mrc(path, job.target(path), settings, device, advance))
    return records


def _table(job: Any, settings: DenoiseSettings, records: list[dict[str, Any]]) -> Any:
    from rich.table import Table

    from voxuda_cli.cli.common import fmt

    table = Table(title=f"ibf-denoise ({settings.denoiser}) -> {job.output}")
    for column in ("input", "shape", "seconds", "Mvoxel/s", "output"):
        table.add_column(column, justify="right" if column in ("seconds", "Mvoxel/s") else "left")
    for record in records:
        shape = "x".join(str(n) for n in record["shape"])
        table.add_row(
            record["name"], shape, fmt(record["seconds"], 2), fmt(record["mvoxel_per_s"], 1), record["output"]
        )
    return table


def _save_preview(path: Path, job, method: str) -> None:
    """Central slices of up to four volumes (or dataset samples), input and denoised side by side."""
    from voxuda_cli.io.dataset import read_h5_dataset
    from voxuda_cli.io.mrc import read_mrc
    from voxuda_cli.io.sources import volume_name
    from voxuda_cli.plots import save_montage

    if job.mode == "dataset":
        before = read_h5_dataset(job.inputs[0])
        after = read_h5_dataset(job.output)
        names = before.names[:_PREVIEW_ROWS]
        columns = {"input": list(before.images[:_PREVIEW_ROWS]), method: list(after.images[:_PREVIEW_ROWS])}
    else:
        paths = job.inputs[:_PREVIEW_ROWS]
        names = [volume_name(p) for p in paths]
        columns = {
            "input": [read_mrc(p, mmap=True, check=False).data for p in paths],
            method: [read_mrc(job.target(p), mmap=True, check=False).data for p in paths],
        }
    save_montage(path, columns, row_labels=names, title=f"ibf-denoise --method {method}: central slices")
