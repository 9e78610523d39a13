"""Import mode: simulated images from elsewhere plus greyscale masks -> a voxuda source dataset.

The paper's preparation (Fig. 1): a greyscale mask (a clean density map) becomes binary at a
threshold (300), then every subtomogram is brought to 32^3. Here: images and masks come from MRC
files / folders or HDF5 datasets and are matched by name (file stem or /names); the mask is
thresholded (``> mask_threshold``) *before* resizing, as the paper describes, then the binary mask
is resized (linear interpolation of 0/1, >= 0.5) and the image Fourier-resampled, or both are
centre-cropped (``crop``). Images are z-scored (``invert`` first for dark-protein data); the
greyscale mask goes to /density (resampled like the image).

Inputs are read one volume at a time (MRC files one by one, HDF5 rows by index), so memory stays
flat in the sample count.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from voxuda_cli.errors import VoxudaInputError
from voxuda_cli.progress import Progress
from voxuda_cli.simulate.presets import SimulationSettings

_MASK_ARRAYS = ("density", "masks", "images")  # where a greyscale mask may sit in an HDF5 input


@dataclass
class _VolumeSource:
    """Named 3D volumes from MRC files or one array of an HDF5 dataset, read lazily."""

    path: Path
    names: list[str]
    voxel_size: float | None
    array: str | None = None  # HDF5 array name; None for MRC
    mrc_files: dict[str, Path] | None = None
    classes: list[str] | None = None

    def read(self, name: str) -> tuple[np.ndarray, float]:
        if self.mrc_files is not None:
            from voxuda_cli.io.mrc import read_mrc

            volume = read_mrc(self.mrc_files[name])
            return np.asarray(volume.data, dtype=np.float32), volume.isotropic_voxel_size
        import h5py

        with h5py.File(self.path, "r") as handle:
            data = np.asarray(handle[self.array][self.names.index(name)], dtype=np.float32)
        if not np.isfinite(data).all():
            raise VoxudaInputError(f"{self.path}: /{self.array} of {name} contains NaN or Inf values; clean the data")
        return data, float(self.voxel_size or 1.0)


def _open_source(path: Path, arrays: tuple[str, ...], role: str) -> _VolumeSource:
    from voxuda_cli.io.sources import expand_mrc_paths, input_kind

    if not path.exists():
        raise VoxudaInputError(f"{path}: not found; pass a folder of MRC files or an HDF5 dataset ({role})")
    if input_kind(path) == "hdf5":
        import h5py

        try:
            handle = h5py.File(path, "r")
        except OSError as exc:
            raise VoxudaInputError(f"{path}: not a readable HDF5 file ({exc})") from exc
        with handle:
            array = next((a for a in arrays if a in handle), None)
            if array is None:
                raise VoxudaInputError(f"{path}: none of /{', /'.join(arrays)} found; cannot read the {role}")
            if handle[array].ndim != 4:
                raise VoxudaInputError(f"{path}: /{array} has shape {handle[array].shape}, expected (N, D, H, W)")
            count = handle[array].shape[0]
            names = _decode(handle["names"][()]) if "names" in handle else [f"{i:06d}" for i in range(count)]
            classes = _decode(handle["classes"][()]) if "classes" in handle else None
            voxel_size = float(handle.attrs["voxel_size"]) if "voxel_size" in handle.attrs else None
        return _VolumeSource(path, names, voxel_size, array=array, classes=classes)
    files = expand_mrc_paths([path])
    return _VolumeSource(path, [f.stem for f in files], None, mrc_files={f.stem: f for f in files})


def _decode(values: Any) -> list[str]:
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]


def binarise(greyscale: np.ndarray, threshold: float) -> np.ndarray:
    """Greyscale mask -> uint8 mask (1 where the value is above ``threshold``)."""
    return (np.asarray(greyscale) > threshold).astype(np.uint8)


def centre_crop(volume: np.ndarray, box: int, where: str) -> np.ndarray:
    if min(volume.shape) < box:
        raise VoxudaInputError(f"{where}: shape {volume.shape} is smaller than --box {box}; resize instead of --crop")
    starts = [(n - box) // 2 for n in volume.shape]
    return np.ascontiguousarray(volume[tuple(slice(s, s + box) for s in starts)])


@dataclass
class ImportedSample:
    name: str
    image: np.ndarray
    mask: np.ndarray
    density: np.ndarray
    voxel_size: float
    class_name: str | None


def prepare_pair(
    name: str, image: np.ndarray, greyscale: np.ndarray, voxel_size: float, settings: SimulationSettings
) -> ImportedSample:
    """Threshold, then resize or crop to ``settings.box``; z-score the image."""
    from voxuda_cli.normalise import zscore
    from voxuda_cli.resample import fourier_resample, resize_mask

    if image.ndim != 3 or image.shape != greyscale.shape:
        raise VoxudaInputError(
            f"{name}: image shape {image.shape} and mask shape {greyscale.shape} must be the same 3D"
        )
    mask = binarise(greyscale, settings.mask_threshold)
    box = settings.box
    if settings.crop:
        image, mask, greyscale = (centre_crop(v, box, name) for v in (image, mask, greyscale))
    elif image.shape != (box,) * 3:
        if len(set(image.shape)) != 1:
            raise VoxudaInputError(f"{name}: shape {image.shape} is not cubic; use --crop to cut a {box}^3 centre")
        voxel_size = voxel_size * image.shape[0] / box
        image = fourier_resample(image, (box,) * 3)
        greyscale = fourier_resample(greyscale, (box,) * 3)
        mask = resize_mask(mask, (box,) * 3)
    if settings.invert:
        image = -image
    return ImportedSample(name, zscore(image), mask, greyscale.astype(np.float32), voxel_size, None)


def iter_imported(images: Path, masks: Path, settings: SimulationSettings) -> tuple[int, Iterator[ImportedSample]]:
    """The number of pairs and an iterator over them (checked up front: names must match)."""
    image_source = _open_source(Path(images), ("images",), "images")
    mask_source = _open_source(Path(masks), _MASK_ARRAYS, "greyscale masks")
    missing = sorted(set(image_source.names) - set(mask_source.names))
    if missing:
        raise VoxudaInputError(
            f"{masks}: no mask for {len(missing)} image(s), e.g. {missing[0]}; masks are matched to images by name"
        )
    if len(set(image_source.names)) != len(image_source.names):
        raise VoxudaInputError(f"{images}: duplicate sample names; names must be unique")

    def generate() -> Iterator[ImportedSample]:
        for index, name in enumerate(image_source.names):
            image, voxel_size = image_source.read(name)
            greyscale, _ = mask_source.read(name)
            sample = prepare_pair(name, image, greyscale, voxel_size, settings)
            if image_source.classes is not None:
                sample.class_name = image_source.classes[index]
            yield sample

    return len(image_source.names), generate()


def import_dataset(
    output: Path | str,
    images: Path | str,
    masks: Path | str,
    settings: SimulationSettings,
    provenance_json: str | None = None,
    preview: Path | str | None = None,
    on_sample: Progress | None = None,
) -> dict[str, Any]:
    """Write the imported pairs as a dataset file (atomically); returns a summary."""
    from voxuda_cli.io.dataset import DatasetWriter

    start = time.perf_counter()
    total, pairs = iter_imported(Path(images), Path(masks), settings)
    first = next(pairs, None)
    if first is None:
        raise VoxudaInputError(f"{images}: no images to import")
    attrs: dict[str, Any] = {"mask_threshold": settings.mask_threshold}
    if provenance_json is not None:
        attrs["provenance"] = provenance_json
    shown: list[Any] = []
    foreground = 0.0
    with DatasetWriter(output, (settings.box,) * 3, first.voxel_size, settings.kind, attrs) as writer:
        for sample in _chain(first, pairs):
            if abs(sample.voxel_size - first.voxel_size) > 1e-3 * first.voxel_size:
                raise VoxudaInputError(
                    f"{sample.name}: voxel size {sample.voxel_size:.3f} A after resizing differs from "
                    f"{first.name}'s {first.voxel_size:.3f} A; import volumes of one size together"
                )
            writer.append(
                sample.image, sample.name, mask=sample.mask, density=sample.density, class_name=sample.class_name
            )
            foreground += float(sample.mask.mean())
            if len(shown) < 4:
                shown.append(sample)
            if on_sample is not None:
                on_sample(1, sample.name)
    if preview is not None:
        from voxuda_cli.plots import save_montage

        save_montage(
            preview,
            {"image": [s.image for s in shown], "density": [s.density for s in shown], "mask": [s.mask for s in shown]},
            row_labels=[s.name for s in shown],
            title="simulate-prep (import): central z slices",
        )
    return {
        "output": str(output),
        "samples": total,
        "kind": settings.kind,
        "box": settings.box,
        "voxel_size": first.voxel_size,
        "mask_threshold": settings.mask_threshold,
        "mean_foreground_fraction": round(foreground / total, 4),
        "seconds": round(time.perf_counter() - start, 2),
        "preview": str(preview) if preview is not None else None,
    }


def _chain(first: ImportedSample, rest: Iterator[ImportedSample]) -> Iterator[ImportedSample]:
    yield first
    yield from rest
