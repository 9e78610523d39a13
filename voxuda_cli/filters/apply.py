"""Denoisers and the noise estimate applied to files: MRC volumes of any size, datasets, folders.

Output is on the input's scale: each volume is z-scored (its own mean and std), denoised, and the
z-scoring undone, so sigma_r stays in z-score units while the numbers keep their meaning. Bilateral
filters stream whole tomograms through memory maps in z-chunks; NGM needs the whole volume (one FFT).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from voxuda_cli.errors import VoxudaInputError
from voxuda_cli.filters import DenoiseSettings
from voxuda_cli.filters.noise import (
    NoiseEstimate,
    NoiseSettings,
    estimate_noise,
    estimate_noise_from_volumes,
    sample_indices,
)
from voxuda_cli.io.dataset import is_h5_path, read_h5_dataset, write_dataset
from voxuda_cli.io.memory import release_rows
from voxuda_cli.io.mrc import create_mrc_memmap, is_mrc_path, read_mrc
from voxuda_cli.io.sources import (
    check_voxel_sizes,
    expand_mrc_paths,
    in_shard,
    single_dataset,
    volume_name,
    with_checked_voxel_size,
)
from voxuda_cli.io.volume import checked_voxel_size
from voxuda_cli.normalise import stream_stats, tensor_stats
from voxuda_cli.progress import Progress

_DATASET_BATCH_VOXELS = 1 << 22  # voxels per denoising batch for datasets


@dataclass
class DenoiseJob:
    """What `ibf-denoise` will do: ``mode`` is mrc (one file), folder (several MRC files) or dataset."""

    mode: str
    inputs: list[Path]
    output: Path

    def target(self, path: Path) -> Path:
        return job_target(self.output, path) if self.mode == "folder" else self.output


def job_target(folder: Path, source: Path) -> Path:
    """An input's denoised file in an output folder: an MRC input's file name, else NAME.mrc (an
    OME-Zarr input is denoised into MRC; a copick store's name is its run)."""
    return folder / (source.name if is_mrc_path(source) else f"{volume_name(source)}.mrc")


def plan_denoise(
    inputs: Sequence[Path | str], output: Path | str, shard: str | None = None, skip_existing: bool = False
) -> DenoiseJob:
    """Check inputs and output before anything is written; one MRC -> MRC, a dataset -> dataset, else a folder.

    A folder job runs only ``shard`` of the files (``I/N``, io.sources.in_shard) and, with
    ``skip_existing``, leaves out files whose output exists (written atomically: complete).
    """
    output = Path(output)
    if not inputs:
        raise VoxudaInputError("no input given; pass MRC files, a folder of MRC files or one HDF5 dataset")
    dataset_path = single_dataset(inputs)
    if dataset_path is not None:
        if not is_h5_path(output):
            raise VoxudaInputError(f"{output}: a dataset in gives a dataset out; name the output .h5")
        job = DenoiseJob("dataset", [dataset_path], output)
    else:
        files = expand_mrc_paths(inputs)
        single = len(files) == 1 and Path(inputs[0]).is_file() and not output.is_dir()
        if single and is_mrc_path(output):
            job = DenoiseJob("mrc", files, output)
        elif output.suffix and (is_mrc_path(output) or is_h5_path(output) or output.is_file()):
            raise VoxudaInputError(
                f"{output}: several MRC inputs (or a folder of them) need an output folder; "
                "an MRC output takes one MRC file"
            )
        else:
            chosen = [f for f in files if in_shard(volume_name(f), shard)]
            if skip_existing:
                chosen = [f for f in chosen if not job_target(output, f).exists()]
            job = DenoiseJob("folder", chosen, output)
    for path in job.inputs:
        if job.target(path).resolve() == path.resolve():
            raise VoxudaInputError(f"{job.target(path)}: would overwrite its input; choose another output")
    return job


def denoise_array(
    volume: np.ndarray,
    settings: DenoiseSettings,
    device: torch.device,
    out: np.ndarray | None = None,
    progress: Progress | None = None,
) -> np.ndarray:
    """Denoise one (D, H, W) volume (a memory map is fine) into ``out``, on the input's scale."""
    settings.validate()
    out = np.empty(volume.shape, dtype=np.float32) if out is None else out
    stats = stream_stats(volume, release=True) if settings.zscore else None
    return settings.build_denoiser().filter_volume(volume, out, device, stats, settings.chunk, progress)


def denoise_mrc(
    source: Path, target: Path, settings: DenoiseSettings, device: torch.device, progress: Progress | None = None
) -> dict[str, Any]:
    """One MRC file in, one out (voxel size, origin and labels kept), streamed through memory maps."""
    volume = with_checked_voxel_size(read_mrc(source, mmap=True), settings.input_voxel_size, str(source))
    start = time.perf_counter()
    label = (
        f"voxuda ibf-denoise --denoiser {settings.denoiser} --sigma-d {settings.sigma_d} --sigma-r {settings.sigma_r}"
    )
    release_rows(volume.data)
    with create_mrc_memmap(target, volume.shape, like=volume, label=label) as out:

        def after_chunk(rows: int, status: str = "", total: int | None = None) -> None:
            release_rows(volume.data)
            release_rows(out)
            if progress is not None:
                progress(rows, status, total)

        denoise_array(volume.data, settings, device, out=out, progress=after_chunk)
        release_rows(out)
    return _record(volume_name(source), volume.shape, time.perf_counter() - start, target)


def denoise_dataset(
    source: Path,
    target: Path,
    settings: DenoiseSettings,
    device: torch.device,
    provenance: str,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """A dataset in, a dataset out: /images denoised volume by volume (input scale), everything else carried over."""
    settings.validate()
    denoiser = settings.build_denoiser()
    dataset = read_h5_dataset(source)
    dataset.voxel_size = checked_voxel_size(dataset.voxel_size, settings.input_voxel_size, str(source))
    start = time.perf_counter()
    images = np.empty_like(dataset.images)
    n = len(dataset)
    step = max(1, _DATASET_BATCH_VOXELS // int(np.prod(dataset.box)))
    for first in range(0, n, step):
        batch = torch.from_numpy(dataset.images[first : first + step]).to(device)
        mean, std = tensor_stats(batch) if settings.zscore else (torch.zeros(()), torch.ones(()))
        cleaned = denoiser((batch - mean) / std)
        images[first : first + step] = (cleaned * std + mean).cpu().numpy()
        if progress is not None:
            progress(min(n, first + step) - first, total=n)
    dataset.images = images
    write_dataset(target, dataset, extra_attrs={"provenance": provenance})
    return _record(source.stem, (n, *dataset.box), time.perf_counter() - start, target)


def _record(name: str, shape: tuple[int, ...], seconds: float, target: Path) -> dict[str, Any]:
    voxels = int(np.prod(shape))
    return {
        "name": name,
        "output": str(target),
        "shape": list(shape),
        "seconds": round(seconds, 3),
        "mvoxel_per_s": round(voxels / max(seconds, 1e-9) / 1e6, 2),
    }


def check_mrc_inputs(paths: Sequence[Path], input_voxel_size: float | None = None) -> None:
    """Open every MRC input (header, voxel size, size, NaN check) before writing anything."""
    for path in paths:
        with_checked_voxel_size(read_mrc(path, mmap=True), input_voxel_size, str(path))


def estimate_noise_files(inputs: Sequence[Path | str], settings: NoiseSettings) -> NoiseEstimate:
    """sigma_t from one HDF5 dataset or MRC files/folders (any shapes; only the sampled files are read)."""
    settings.validate()
    if not inputs:
        raise VoxudaInputError("no input given; pass an HDF5 dataset, MRC files or a folder of MRC files")
    dataset_path = single_dataset(inputs)
    if dataset_path is not None:
        dataset = read_h5_dataset(dataset_path)
        checked_voxel_size(dataset.voxel_size, settings.input_voxel_size, str(dataset_path))
        return estimate_noise(dataset.images, dataset.names, settings)
    check_voxel_sizes(inputs, settings.input_voxel_size)
    files = expand_mrc_paths(inputs)
    chosen = sample_indices(len(files), int(settings.n_sampled), int(settings.seed))
    return estimate_noise_from_volumes(
        ((volume_name(files[i]), read_mrc(files[i]).data) for i in chosen), settings.keep_rate
    )


__all__ = [
    "DenoiseJob",
    "check_mrc_inputs",
    "denoise_array",
    "denoise_dataset",
    "denoise_mrc",
    "estimate_noise_files",
    "plan_denoise",
]
