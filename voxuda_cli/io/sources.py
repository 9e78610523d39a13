"""The "dataset" argument: one HDF5 dataset, MRC files, or folders of MRC files (name = file stem)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Literal

import numpy as np

from voxuda_cli.errors import VoxudaInputError
from voxuda_cli.io.copick import input_stores, is_copick_locator, run_name
from voxuda_cli.io.dataset import Dataset, dataset_voxel_size, is_h5_path, read_h5_dataset
from voxuda_cli.io.mrc import MRC_SUFFIXES, is_mrc_path, read_mrc
from voxuda_cli.io.volume import Volume, checked_voxel_size
from voxuda_cli.io.zarr import is_zarr_path

_VOXEL_SIZE_TOLERANCE = 1e-3  # relative; headers written by different tools round differently


InputKind = Literal["hdf5", "mrc", "zarr", "folder"]


def input_kind(path: Path | str) -> InputKind:
    """What kind of input a path is: an HDF5 dataset, an MRC file or a folder (of MRC files).

    The one place that decides it; every command reads its inputs through this. A missing path or
    an unknown file type is a one-line error naming the path. (Whether an MRC volume is a
    subtomogram or a whole tomogram depends on the model's box: ``voxuda predict`` decides that.)
    """
    path = Path(path)
    if _is_zarr_store(path):
        return "zarr"  # an OME-Zarr store is a folder but one volume
    if path.is_dir():
        return "folder"
    if not path.exists():
        raise VoxudaInputError(f"{path}: file not found; check the path")
    if is_h5_path(path):
        return "hdf5"
    if is_mrc_path(path):
        return "mrc"
    raise VoxudaInputError(
        f"{path}: unknown file type; pass an HDF5 dataset (.h5) or MRC volumes ({', '.join(MRC_SUFFIXES)})"
    )


def volume_name(path: Path) -> str:
    """The name an input volume goes by (outputs, shards, picks' tomogram): its file stem, or the
    run of a copick project's store (every run's tomogram is ``wbp.zarr``)."""
    return run_name(path) or path.stem


def _is_zarr_store(path: Path) -> bool:
    return path.is_dir() and is_zarr_path(path)


def single_dataset(paths: Sequence[Path | str]) -> Path | None:
    """The HDF5 dataset when ``paths`` is exactly one, else None (MRC files and folders).

    A missing .h5 path counts as a dataset, so its reader names the file in its error.
    """
    if len(paths) == 1 and (not Path(paths[0]).exists() and is_h5_path(Path(paths[0]))):
        return Path(paths[0])
    if len(paths) == 1 and Path(paths[0]).exists() and input_kind(paths[0]) == "hdf5":
        return Path(paths[0])
    return None


def expand_mrc_paths(paths: Sequence[Path | str]) -> list[Path]:
    """MRC files given directly or found (sorted) in given folders, and the stores of copick
    locators (io.copick: ``copick.json:tomogram=wbp:spacing=10``); anything else is an error."""
    files: list[Path] = []
    for raw in paths:
        if is_copick_locator(raw):
            files.extend(input_stores(raw))
            continue
        path = Path(raw)
        kind = input_kind(path)
        if kind == "folder":
            found = sorted(p for p in path.iterdir() if (p.is_file() and is_mrc_path(p)) or _is_zarr_store(p))
            if not found:
                raise VoxudaInputError(f"{path}: folder holds no MRC files ({', '.join(MRC_SUFFIXES)})")
            files.extend(found)
        elif kind in ("mrc", "zarr"):
            files.append(path)
        elif len(paths) == 1:
            raise VoxudaInputError(f"{path}: an HDF5 dataset, where this command reads MRC or OME-Zarr volumes")
        else:
            raise VoxudaInputError(f"{path}: an HDF5 dataset must be the only input, not mixed with MRC files")
    stems = [volume_name(p) for p in files]
    duplicates = sorted({s for s in stems if stems.count(s) > 1})
    if duplicates:
        raise VoxudaInputError(f"{duplicates[0]}: several input files share this name; names must be unique")
    return files


PROBABILITIES_SUFFIX = "_probabilities"  # predict --probabilities writes X_probabilities.mrc beside X.mrc


def probabilities_path(mask_path: Path) -> Path:
    """Where predict writes the probability map of the mask ``mask_path``."""
    return mask_path.with_name(f"{mask_path.stem}{PROBABILITIES_SUFFIX}{mask_path.suffix}")


def without_probability_maps(files: Sequence[Path]) -> list[Path]:
    """``files`` less the probability maps whose mask is among them (a predict output folder's masks)."""
    present = set(files)
    return [f for f in files if not any(probabilities_path(mask) == f for mask in present if mask != f)]


def read_dataset(paths: Sequence[Path | str], require_masks: bool = False, mask_threshold: float = 0.5) -> Dataset:
    """Read any dataset argument into memory, validated.

    MRC inputs must share one shape; a mask is not read from MRC images (use a dataset for that),
    except that ``require_masks`` reads the volumes themselves as masks (``> mask_threshold``),
    which is how prediction and ground-truth MRC files are scored.
    """
    if not paths:
        raise VoxudaInputError("no input given; pass an HDF5 dataset, MRC files or a folder of MRC files")
    h5 = single_dataset(paths)
    if h5 is not None:
        dataset = read_h5_dataset(h5)
        if require_masks and dataset.masks is None:
            raise VoxudaInputError(f"{h5}: no /masks array; this command needs labelled data")
        return dataset
    files = expand_mrc_paths(paths)
    if require_masks:  # volumes read as masks: a probability map beside its mask is not one
        files = without_probability_maps(files)
    volumes = [read_mrc(path) for path in files]
    shapes = {v.shape for v in volumes}
    if len(shapes) > 1:
        raise VoxudaInputError(
            f"{files[0].parent}: MRC inputs have different shapes {sorted(shapes)}; "
            "resize or patchify them first (voxuda patchify)"
        )
    voxel_size = _common_voxel_size(files, volumes)
    images = np.stack([np.asarray(v.data, dtype=np.float32) for v in volumes])
    masks = (images > mask_threshold).astype(np.uint8) if require_masks else None
    dataset = Dataset(
        images=images,
        names=[volume_name(p) for p in files],
        voxel_size=voxel_size,
        kind="target",
        masks=masks,
        source=str(files[0].parent if len(files) > 1 else files[0]),
    )
    dataset.validate()
    return dataset


def _common_voxel_size(files: list[Path], volumes: list[Volume]) -> float:
    sizes = [v.isotropic_voxel_size for v in volumes]
    reference = sizes[0]
    for path, size in zip(files, sizes):
        if abs(size - reference) > _VOXEL_SIZE_TOLERANCE * reference:
            raise VoxudaInputError(
                f"{path}: voxel size {size:.3f} A differs from {files[0].name} ({reference:.3f} A); "
                "resample to one voxel size first"
            )
    return reference


def iter_volumes(
    paths: Sequence[Path | str], mmap: bool = False, input_voxel_size: float | None = None
) -> Iterator[tuple[str, Volume]]:
    """Yield ``(name, Volume)`` for every volume of any shape: MRC files, folders, or a dataset's images.

    Each voxel size is checked: ``input_voxel_size`` (--input-voxel-size) where given, else the
    header, refused when lost (0 or 1.0 A; io.volume.checked_voxel_size).
    """
    h5 = single_dataset(paths)
    if h5 is not None:
        dataset = read_h5_dataset(h5)
        size = checked_voxel_size(dataset.voxel_size, input_voxel_size, str(h5))
        for index, name in enumerate(dataset.names):
            yield name, Volume(data=dataset.images[index], voxel_size=(size,) * 3)
        return
    for path in expand_mrc_paths(paths):
        yield volume_name(path), with_checked_voxel_size(read_mrc(path, mmap=mmap), input_voxel_size, str(path))


def with_checked_voxel_size(volume: Volume, input_voxel_size: float | None, source: str) -> Volume:
    """``volume`` with its voxel size checked, or set to --input-voxel-size (isotropic) where given."""
    size = checked_voxel_size(volume.isotropic_voxel_size, input_voxel_size, source)
    return volume if input_voxel_size is None else replace(volume, voxel_size=(size,) * 3)


def check_voxel_sizes(paths: Sequence[Path | str], input_voxel_size: float | None = None) -> None:
    """Every input's voxel size checked from its header alone (MRC memory-mapped, a dataset's
    attributes without its arrays), before work starts."""
    h5 = single_dataset(paths)
    if h5 is not None:
        checked_voxel_size(dataset_voxel_size(h5), input_voxel_size, str(h5))
        return
    for _ in iter_volumes(paths, mmap=True, input_voxel_size=input_voxel_size):
        pass


def count_inputs(paths: Sequence[Path | str]) -> int:
    """How many volumes ``iter_volumes`` will yield (for progress bars)."""
    h5 = single_dataset(paths)
    if h5 is not None:
        import h5py

        try:
            with h5py.File(h5, "r") as handle:
                if "images" not in handle:
                    raise VoxudaInputError(f"{h5}: no /images array; not a voxuda dataset")
                return int(handle["images"].shape[0])
        except OSError as exc:
            raise VoxudaInputError(f"{h5}: not a readable HDF5 file ({exc})") from exc
    return len(expand_mrc_paths(paths))


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` -> (I, N) with 1 <= I <= N; a one-line error otherwise."""
    index, _, count = str(text).partition("/")
    if not (index.isdigit() and count.isdigit() and 1 <= int(index) <= int(count)):
        raise VoxudaInputError(f"--shard {text}: give I/N with 1 <= I <= N (e.g. --shard 2/8)")
    return int(index), int(count)


def in_shard(name: str, shard: str | None) -> bool:
    """Whether the input ``name`` (its volume_name) belongs to ``shard`` (None: every input does).

    A hash of the name, not its position: adding or removing other files moves no input between
    shards, and every machine of an array agrees without talking to the others.
    """
    if shard is None:
        return True
    index, count = parse_shard(shard)
    digest = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big")
    return digest % count == index - 1
