"""The HDF5 dataset format, version 1 (see README "Dataset format").

/images float32 (N,D,H,W); optional /masks uint8, /probabilities, /density, /confidence,
/names utf-8, /classes utf-8, /coords int32 (N,3), /parents utf-8, and any per-sample arrays
(N, ...) under /params/<name>. File attributes: voxuda_format=1, voxel_size, kind, provenance (JSON).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn

import h5py
import numpy as np

from voxuda_cli import __version__
from voxuda_cli.errors import VoxudaInputError, check_format_version
from voxuda_cli.io.atomic import atomic_output
from voxuda_cli.io.volume import check_finite
from voxuda_cli.signals import held_back

FORMAT_VERSION = 1
H5_SUFFIXES = (".h5", ".hdf5", ".hdf")
VOLUME_ARRAYS = ("images", "masks", "probabilities", "density", "confidence")
# attributes that say where samples came from; outputs aligned with an input carry them over
CARRIED_ATTRS = ("parents_info", "patch", "stride", "coordinates", "box")
_STRING = h5py.string_dtype(encoding="utf-8")


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
        return tuple(int(s) for s in self.images.shape[1:])  # type: ignore[return-value]  # a 3D shape: mypy cannot count a generator's tuple

    @property
    def is_patchified(self) -> bool:
        """Grid patches (/coords = patch origins) that stitch back; extracted boxes (/coords = centres) do not."""
        return self.coords is not None and self.parents is not None and not self.is_extracted

    @property
    def is_extracted(self) -> bool:
        """Subtomograms cut at picks by ``voxuda extract``: /coords are box centres, pasted back by predict."""
        return self.coords is not None and self.parents is not None and self.attrs.get("coordinates") == "centre"

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

    def coords_at(self, index: int) -> tuple[int, int, int] | None:
        """Sample ``index``'s /coords (patch origin or box centre) as ints, or None without /coords."""
        if self.coords is None:
            return None
        z, y, x = (int(c) for c in self.coords[index])
        return z, y, x

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
        # 0 is "unknown" (a header that lost it): kept, and refused by the commands that need it
        if not (math.isfinite(self.voxel_size) and self.voxel_size >= 0):
            raise VoxudaInputError(f"{where}: voxel size {self.voxel_size} is not a number of angstrom (0 or more)")
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
        check_format_version(path, attrs.get("voxuda_format", FORMAT_VERSION), FORMAT_VERSION, "dataset")
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


def dataset_voxel_size(path: Path | str) -> float:
    """A dataset file's voxel size from its attributes alone (no array is read), as read_h5_dataset gives it."""
    path = Path(path)
    try:
        with h5py.File(path, "r") as handle:
            return float(_attr(handle.attrs.get("voxel_size", 1.0)))
    except OSError:
        return float(read_h5_dataset(path).voxel_size)  # its own one-line error for a bad file


def _attr(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.generic):
        return value.item()
    return value


def provenance(command: str, options: dict[str, Any], inputs: list[str]) -> str:
    """The provenance attribute: what made this file, with which options and inputs."""
    return json.dumps({"command": command, "version": __version__, "options": options, "inputs": inputs}, default=str)


class _GuardedFile:
    """The file object HDF5 writes through: the first write error is kept, and HDF5 is told the write
    succeeded. HDF5 (1.14) does not survive its own write errors: after one, closing the file
    crashes the process (a segfault, at the latest at exit). The writer checks the kept error
    after each sample and at the end, and then discards the file. For the same reason signals are
    held back while HDF5 runs (a KeyboardInterrupt raised inside a callback is an HDF5 error)."""

    def __init__(self, path: Path) -> None:
        self._raw = open(path, "r+b")  # noqa: SIM115  (closed by close(), after HDF5's own close)
        self.error: OSError | None = None

    def check(self) -> None:
        if self.error is not None:
            raise self.error

    def _guard(self, action: Any, *args: Any) -> Any:
        try:
            return action(*args)
        except OSError as exc:
            self.error = self.error or exc
            return None

    def write(self, data: Any) -> int:
        size = memoryview(data).nbytes
        if self.error is None and self._guard(self._raw.write, data) is not None:
            return size
        self._raw.seek(size, os.SEEK_CUR)  # the file is discarded anyway; keep HDF5's offsets consistent
        return size

    def readinto(self, buffer: Any) -> int:
        return self._raw.readinto(buffer)

    def read(self, size: int = -1) -> bytes:
        return self._raw.read(size)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()

    def truncate(self, size: int | None = None) -> int:
        result = self._guard(self._raw.truncate, size)
        return size if result is None else result  # type: ignore[return-value]  # result is an int when not None

    def flush(self) -> None:
        self._guard(self._raw.flush)

    def close(self) -> None:
        if not self._raw.closed:
            self._guard(self._raw.close)


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
        self._arrays: dict[str, h5py.Dataset] = {}
        self._context: Any = None
        self._file: _GuardedFile | None = None

    def __enter__(self) -> DatasetWriter:
        self._context = atomic_output(self.path)
        tmp = self._context.__enter__()
        try:
            self._file = _GuardedFile(tmp)
            with held_back():
                # HDF5's own flock would clash with the one atomic_output holds on the temporary file.
                self._handle = h5py.File(self._file, "w", locking=False)
                for key, value in self.attrs.items():
                    self._handle.attrs[key] = value
        except BaseException as exc:
            self._abandon(exc)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._handle is not None
        if exc is not None:
            self._abandon(exc)
        try:
            if self.count == 0:
                raise VoxudaInputError(f"{self.path}: no samples to write")
            # HDF5 writes most of the file at flush and close: a full disk shows here, and then the
            # temporary file must not be renamed into place.
            with held_back():
                self._handle.flush()
                self._arrays.clear()
                self._handle.close()
            self._file.close()  # type: ignore[union-attr]  # open while the writer is
            self._file.check()  # type: ignore[union-attr]  # open while the writer is
        except BaseException as error:
            self._abandon(error)
        self._context.__exit__(None, None, None)

    def _abandon(self, exc: BaseException) -> NoReturn:
        """Close the HDF5 file as well as it can, remove the temporary file, raise (a write failure as one line)."""
        self._arrays.clear()
        with contextlib.suppress(Exception):
            if self._handle is not None:
                self._handle.close()
            if self._file is not None:
                self._file.close()
        self._context.__exit__(type(exc), exc, exc.__traceback__)
        raise exc

    def set_attr(self, key: str, value: Any) -> None:
        """Set a file attribute while writing (e.g. a summary known only at the end)."""
        assert self._handle is not None
        with held_back():
            self._handle.attrs[key] = value

    def _array(self, key: str, shape: tuple[int, ...], dtype: Any) -> h5py.Dataset:
        assert self._handle is not None
        # Kept open until the file closes: HDF5 writes a dataset's chunks when its last handle goes,
        # and there (in a destructor) a write error would only be printed, not raised.
        if key not in self._arrays:
            volume_like = len(shape) == 3
            self._arrays[key] = self._handle.create_dataset(
                key,
                shape=(0, *shape),
                maxshape=(None, *shape),
                dtype=dtype,
                chunks=(1, *shape) if volume_like else None,
                compression=self.compression if volume_like else None,
            )
        return self._arrays[key]

    def _push(self, key: str, value: Any, dtype: Any) -> None:
        value = np.asarray(value, dtype=dtype) if dtype is not _STRING else value
        shape = () if dtype is _STRING else tuple(np.shape(value))
        with held_back():  # HDF5 calls back into _GuardedFile: a signal must not land inside HDF5
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
        self._file.check()  # type: ignore[union-attr]  # stop at the first failed write, not at the end
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
