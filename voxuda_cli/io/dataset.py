"""The HDF5 dataset format, version 1 (see README "Dataset format").

/images float32 (N,D,H,W); optional /masks uint8, /probabilities, /density, /confidence,
/names utf-8, /classes utf-8, /coords int32 (N,3), /parents utf-8, and any per-sample arrays
(N, ...) under /params/<name>. File attributes: voxuda_format=1, voxel_size, kind, provenance (JSON).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import h5py
import numpy as np

from voxuda_cli import __version__
from voxuda_cli.errors import VoxudaInputError
from voxuda_cli.io.atomic import atomic_output
from voxuda_cli.io.mrc import check_finite

FORMAT_VERSION = 1
H5_SUFFIXES = (".h5", ".hdf5", ".hdf")
VOLUME_ARRAYS = ("images", "masks", "probabilities", "density", "confidence")
_STRING = h5py.string_dtype(encoding="utf-8")
_ARRAY_DTYPES = {
    "images": np.float32,
    "masks": np.uint8,
    "density": np.float32,
    "confidence": np.float32,
}


def is_h5_path(path: Path) -> bool:
    return path.suffix.lower() in H5_SUFFIXES


@dataclass
class Dataset:
    """A whole dataset in memory. ``images`` is (N, D, H, W); every other array is aligned on N."""

    images: np.ndarray
    names: list[str]
    voxel_size: float = 1.0
    kind: str = "source"
    masks: np.ndarray | None = None
    classes: list[str] | None = None
    density: np.ndarray | None = None
    probabilities: np.ndarray | None = None
    confidence: np.ndarray | None = None
    coords: np.ndarray | None = None
    parents: list[str] | None = None
    params: dict[str, np.ndarray] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)
    source: str = "<memory>"

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def box(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.images.shape[1:])  # type: ignore[return-value]

    @property
    def is_patchified(self) -> bool:
        return self.coords is not None and self.parents is not None

    def subset(self, indices: np.ndarray | list[int]) -> Dataset:
        """The samples at ``indices`` (a copy), every aligned array included."""
        idx = np.asarray(indices, dtype=np.int64)

        def take(array: np.ndarray | None) -> np.ndarray | None:
            return None if array is None else np.asarray(array)[idx]

        def take_list(values: list[str] | None) -> list[str] | None:
            return None if values is None else [values[i] for i in idx]

        return Dataset(
            images=np.asarray(self.images)[idx],
            names=[self.names[i] for i in idx],
            voxel_size=self.voxel_size,
            kind=self.kind,
            masks=take(self.masks),
            classes=take_list(self.classes),
            density=take(self.density),
            probabilities=take(self.probabilities),
            confidence=take(self.confidence),
            coords=take(self.coords),
            parents=take_list(self.parents),
            params={k: np.asarray(v)[idx] for k, v in self.params.items()},
            attrs=dict(self.attrs),
            source=self.source,
        )

    def validate(self) -> None:
        """Raise VoxudaInputError naming the source file and the first problem found."""
        where = self.source
        if self.images.ndim != 4:
            raise VoxudaInputError(f"{where}: /images has shape {self.images.shape}, expected (N, D, H, W) 3D volumes")
        n = len(self)
        if n == 0:
            raise VoxudaInputError(f"{where}: dataset holds no samples")
        if len(self.names) != n:
            raise VoxudaInputError(f"{where}: {len(self.names)} names for {n} images; one name per image")
        if len(set(self.names)) != n:
            duplicates = sorted({x for x in self.names if self.names.count(x) > 1})[:5]
            raise VoxudaInputError(f"{where}: duplicate sample names {duplicates}; names must be unique")
        for name in ("masks", "density", "probabilities", "confidence"):
            array = getattr(self, name)
            if array is not None and tuple(array.shape) != tuple(self.images.shape):
                raise VoxudaInputError(
                    f"{where}: /{name} has shape {tuple(array.shape)} but /images has "
                    f"{tuple(self.images.shape)}; they must match"
                )
        for name in ("classes", "parents"):
            values = getattr(self, name)
            if values is not None and len(values) != n:
                raise VoxudaInputError(f"{where}: /{name} has {len(values)} entries for {n} images")
        if self.coords is not None and tuple(self.coords.shape) != (n, 3):
            raise VoxudaInputError(f"{where}: /coords has shape {self.coords.shape}, expected ({n}, 3)")
        if not (math.isfinite(self.voxel_size) and self.voxel_size > 0):
            raise VoxudaInputError(f"{where}: voxel_size {self.voxel_size} is not a positive number")
        for name in ("images", "density", "probabilities"):
            array = getattr(self, name)
            if array is not None:
                check_finite(array, f"{where}: /{name}", chunk=256)
        if self.masks is not None:
            _check_binary(self.masks, f"{where}: /masks")


def _check_binary(masks: np.ndarray, where: str) -> None:
    for start in range(0, masks.shape[0], 256):
        if np.any(masks[start : start + 256] > 1):
            raise VoxudaInputError(f"{where} holds values other than 0 and 1; binarise it (--mask-threshold)")


def _decode(values: Any) -> list[str]:
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]


def read_h5_dataset(path: Path | str, validate: bool = True) -> Dataset:
    """Read a dataset file into memory and validate it."""
    path = Path(path)
    if not path.is_file():
        raise VoxudaInputError(f"{path}: file not found; check the path")
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise VoxudaInputError(f"{path}: not a readable HDF5 file ({exc}); check the file") from exc
    with handle:
        if "images" not in handle:
            raise VoxudaInputError(f"{path}: no /images array; not a voxuda dataset (see README, Dataset format)")
        images = handle["images"]
        if images.ndim != 4:
            raise VoxudaInputError(f"{path}: /images has shape {images.shape}, expected (N, D, H, W)")
        n = images.shape[0]
        names = _decode(handle["names"][()]) if "names" in handle else [f"{i:06d}" for i in range(n)]
        arrays = {key: np.asarray(handle[key][()]) for key in VOLUME_ARRAYS if key in handle and key != "images"}
        params = {}
        if "params" in handle:
            params = {key: np.asarray(handle["params"][key][()]) for key in handle["params"]}
        attrs = {key: _attr(value) for key, value in handle.attrs.items()}
        dataset = Dataset(
            images=np.asarray(images[()], dtype=np.float32),
            names=names,
            voxel_size=float(attrs.get("voxel_size", 1.0)),
            kind=str(attrs.get("kind", "source")),
            masks=arrays.get("masks"),
            classes=_decode(handle["classes"][()]) if "classes" in handle else None,
            density=arrays.get("density"),
            probabilities=arrays.get("probabilities"),
            confidence=arrays.get("confidence"),
            coords=np.asarray(handle["coords"][()], dtype=np.int64) if "coords" in handle else None,
            parents=_decode(handle["parents"][()]) if "parents" in handle else None,
            params=params,
            attrs=attrs,
            source=str(path),
        )
    if validate:
        dataset.validate()
    return dataset


def _attr(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.generic):
        return value.item()
    return value


def provenance(command: str, options: dict[str, Any], inputs: list[str]) -> str:
    """The provenance attribute: what made this file, with which options and inputs."""
    return json.dumps({"command": command, "version": __version__, "options": options, "inputs": inputs}, default=str)


class DatasetWriter:
    """Stream samples into a dataset file: memory stays flat in the sample count.

    Use as a context manager; the file appears (atomically) only when the block ends without error.
    ``append(image=..., name=..., mask=..., ...)`` adds one sample; keys are dataset arrays,
    ``class_name``, ``coords``, ``parent`` and ``params`` (a dict of per-sample scalars/arrays).
    """

    def __init__(
        self,
        path: Path | str,
        box: tuple[int, int, int],
        voxel_size: float,
        kind: str,
        attrs: dict[str, Any] | None = None,
        compression: str | None = "gzip",
    ) -> None:
        self.path = Path(path)
        self.box = tuple(int(b) for b in box)
        self.attrs = {"voxuda_format": FORMAT_VERSION, "voxel_size": float(voxel_size), "kind": kind}
        self.attrs.update(attrs or {})
        self.compression = compression
        self.count = 0
        self._handle: h5py.File | None = None
        self._context: Any = None

    def __enter__(self) -> DatasetWriter:
        self._context = atomic_output(self.path)
        tmp = self._context.__enter__()
        self._handle = h5py.File(tmp, "w")
        for key, value in self.attrs.items():
            self._handle.attrs[key] = value
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._handle is not None
        try:
            if exc_type is None and self.count == 0:
                raise VoxudaInputError(f"{self.path}: no samples to write")
            self._handle.close()
        finally:
            if exc_type is None:
                self._context.__exit__(None, None, None)
            else:
                self._handle.close()
                self._context.__exit__(exc_type, exc, tb)

    def set_attr(self, key: str, value: Any) -> None:
        """Set a file attribute while writing (e.g. a summary known only at the end)."""
        assert self._handle is not None
        self._handle.attrs[key] = value

    def _array(self, key: str, shape: tuple[int, ...], dtype: Any) -> h5py.Dataset:
        assert self._handle is not None
        if key not in self._handle:
            volume_like = len(shape) == 3
            self._handle.create_dataset(
                key,
                shape=(0, *shape),
                maxshape=(None, *shape),
                dtype=dtype,
                chunks=(1, *shape) if volume_like else None,
                compression=self.compression if volume_like else None,
            )
        return self._handle[key]

    def _push(self, key: str, value: Any, dtype: Any) -> None:
        value = np.asarray(value, dtype=dtype) if dtype is not _STRING else value
        shape = () if dtype is _STRING else tuple(np.shape(value))
        array = self._array(key, shape, dtype)
        if array.shape[0] != self.count:
            raise ValueError(f"{key}: every sample must provide it (got it for {array.shape[0]} of {self.count})")
        array.resize(self.count + 1, axis=0)
        array[self.count] = value

    def append(
        self,
        image: np.ndarray,
        name: str,
        *,
        mask: np.ndarray | None = None,
        density: np.ndarray | None = None,
        probabilities: np.ndarray | None = None,
        confidence: np.ndarray | None = None,
        class_name: str | None = None,
        coords: tuple[int, int, int] | None = None,
        parent: str | None = None,
        params: dict[str, Any] | None = None,
    ) -> None:
        if tuple(image.shape) != self.box:
            raise VoxudaInputError(f"{name}: image shape {image.shape} differs from the dataset box {self.box}")
        self._push("images", image, np.float32)
        self._push("names", name, _STRING)
        if mask is not None:
            self._push("masks", mask, np.uint8)
        if density is not None:
            self._push("density", density, np.float32)
        if probabilities is not None:
            self._push("probabilities", probabilities, np.float16)
        if confidence is not None:
            self._push("confidence", confidence, np.float32)
        if class_name is not None:
            self._push("classes", class_name, _STRING)
        if coords is not None:
            self._push("coords", coords, np.int32)
        if parent is not None:
            self._push("parents", parent, _STRING)
        for key, value in (params or {}).items():
            self._push(f"params/{key}", value, np.float32)
        self.count += 1


def write_dataset(path: Path | str, dataset: Dataset, extra_attrs: dict[str, Any] | None = None) -> None:
    """Write a whole in-memory dataset atomically."""
    attrs = {k: v for k, v in dataset.attrs.items() if k not in ("voxuda_format", "voxel_size", "kind")}
    attrs.update(extra_attrs or {})
    with DatasetWriter(path, dataset.box, dataset.voxel_size, dataset.kind, attrs) as writer:
        for index in range(len(dataset)):

            def pick(array: np.ndarray | None) -> np.ndarray | None:
                return None if array is None else array[index]

            writer.append(
                dataset.images[index],
                dataset.names[index],
                mask=pick(dataset.masks),
                density=pick(dataset.density),
                probabilities=pick(dataset.probabilities),
                confidence=pick(dataset.confidence),
                class_name=dataset.classes[index] if dataset.classes else None,
                coords=tuple(dataset.coords[index]) if dataset.coords is not None else None,
                parent=dataset.parents[index] if dataset.parents else None,
                params={k: v[index] for k, v in dataset.params.items()},
            )
