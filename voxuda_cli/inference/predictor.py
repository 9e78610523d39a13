"""Predictor: a trained model file -> foreground probabilities and masks of subtomograms, datasets and tomograms.

Usable from Python without the CLI (nnU-Net's predictor is the model)::

    from voxuda_cli.inference import Predictor, PredictSettings
    predictor = Predictor("run/", tta=True, device="cpu")             # or Predictor("run/", PredictSettings(...))
    probabilities = predictor.predict_volume(volume)               # any (D, H, W) at least the box
    result = predictor.predict_dataset(read_dataset(["target.h5"]))
    predictor.predict_tomogram("tomo.mrc", "tomo_mask.mrc")        # streamed, bounded memory

Inputs are normalised as in training (METHOD.md): contrast flipped when the model was trained
with ``--invert``, then each subtomogram z-scored on its own. A whole tomogram is z-scored window
by window by default (``normalise="window"``): each window is a subtomogram of the box size, so
the network sees the statistics it was trained on, a region's prediction does not depend on the
rest of the tomogram (a cut-out predicts the same away from its border), and slow intensity
changes across a tomogram (uneven ice) cancel. ``normalise="tomogram"`` z-scores the tomogram
once instead. ``benchmarks/bench_predict.py`` measures both with a network trained briefly on
z-scored subtomograms of noisy balls: on a flat synthetic tomogram tomogram-wide z-scoring is
slightly better (Dice 0.905 vs 0.874: per-window scaling lifts the noise of nearly empty windows),
with a +-0.5 intensity ramp across it per-window z-scoring holds (0.873) and tomogram-wide
collapses (0.632). Real tomograms are not flat, hence the default.
Foreground is class 1; masks are ``probability > threshold``.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from voxuda_cli.device import resolve_device
from voxuda_cli.errors import VoxudaInputError
from voxuda_cli.inference.components import remove_small_components, remove_small_components_chunked
from voxuda_cli.inference.rescaled import predict_samples, predict_tomogram_rescaled
from voxuda_cli.inference.settings import PredictSettings
from voxuda_cli.inference.sliding_window import WindowPlan, importance_map, sliding_window, sliding_window_array
from voxuda_cli.inference.smoothing import smoothed_mask
from voxuda_cli.io.dataset import Dataset
from voxuda_cli.io.memory import release_rows
from voxuda_cli.io.mrc import create_mrc_memmap, read_mrc
from voxuda_cli.io.volume import Volume
from voxuda_cli.models.serialization import ModelInfo, load_model, resolve_model_path
from voxuda_cli.models.speed import autocast, autocast_dtype, prepare_network
from voxuda_cli.normalise import VolumeStats, stream_stats, zscore_tensor
from voxuda_cli.progress import Progress
from voxuda_cli.resample import checked_voxel_size, differs, resample_probabilities

log = logging.getLogger("voxuda")

FOREGROUND = 1
_FLIP_SETS = [dims for count in range(4) for dims in itertools.combinations((2, 3, 4), count)]


@dataclass
class DatasetPrediction:
    """Per-sample foreground probabilities (float32) and masks (uint8), aligned with the dataset."""

    probabilities: np.ndarray
    masks: np.ndarray

    @property
    def foreground_fraction(self) -> float:
        return float(self.masks.mean()) if self.masks.size else 0.0


@dataclass
class TomogramPrediction:
    """What :meth:`Predictor.predict_tomogram` wrote and measured."""

    name: str
    shape: tuple[int, int, int]
    windows: int
    foreground_fraction: float
    seconds: float
    outputs: list[str]
    removed_voxels: int = 0
    preview: dict[str, np.ndarray] = field(default_factory=dict)  # central z-slices: input, probability, mask

    @property
    def mvoxel_per_s(self) -> float:
        return math.prod(self.shape) / 1e6 / max(self.seconds, 1e-9)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "shape": list(self.shape),
            "windows": self.windows,
            "foreground_fraction": self.foreground_fraction,
            "removed_voxels": self.removed_voxels,
            "seconds": self.seconds,
            "mvoxel_per_s": self.mvoxel_per_s,
            "outputs": self.outputs,
        }


class Predictor:
    """Loads a model file once and predicts subtomograms, datasets and whole tomograms."""

    model_path: Path | None  # None for a network given in memory (from_network)

    def __init__(self, model: Path | str, settings: PredictSettings | None = None, **changes: Any) -> None:
        """Load ``model`` (a run folder or model.pt); ``changes`` override fields of ``settings``.

        ``Predictor("run/", device="cpu", tta=True)`` is ``Predictor("run/", PredictSettings(device="cpu", tta=True))``.
        """
        self.settings = replace(settings or PredictSettings(), **changes)
        self.device = resolve_device(self.settings.device)
        self.model_path = resolve_model_path(model)
        network, info = load_model(self.model_path, self.settings.use, self.device)
        # only a network of its own: from_network's (e.g. the one being trained) is left as it is
        self._setup(prepare_network(network, self.device, self.settings.compile), info)

    @classmethod
    def from_network(cls, network: nn.Module, info: ModelInfo, settings: PredictSettings | None = None) -> Predictor:
        """A predictor around a network already in memory (e.g. during training or in a benchmark)."""
        predictor = cls.__new__(cls)
        predictor.settings = settings or PredictSettings()
        predictor.device = resolve_device(predictor.settings.device)
        predictor.model_path = None
        predictor._setup(network.to(predictor.device).eval(), info)
        return predictor

    def _setup(self, network: nn.Module, info: ModelInfo) -> None:
        self.network = network
        self.info = info
        if info.normalisation != "zscore":
            raise VoxudaInputError(
                f"{self.model_path}: model expects normalisation {info.normalisation!r}; this version knows zscore"
            )
        self.amp_dtype = autocast_dtype(self.settings.amp, self.device)

    def with_settings(self, **changes: Any) -> Predictor:
        """The same loaded network with some settings changed (no reload)."""
        other = Predictor.__new__(Predictor)
        other.__dict__.update(self.__dict__)
        other.settings = replace(self.settings, **changes)
        if "amp" in changes:
            other.amp_dtype = autocast_dtype(other.settings.amp, other.device)
        return other

    @property
    def box(self) -> tuple[int, int, int]:
        return tuple(int(b) for b in self.info.box)  # type: ignore[return-value]

    # ---- windows -------------------------------------------------------------------------------

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        return autocast(self.amp_dtype, self.device)

    def _foreground(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, D, H, W) normalised -> (B, D, H, W) foreground probability; 8-flip average with TTA."""
        flip_sets = _FLIP_SETS if self.settings.tta else [()]
        total: torch.Tensor | None = None
        for dims in flip_sets:
            logits = self.network(x.flip(dims) if dims else x)
            probability = torch.softmax(logits.float(), dim=1)[:, FOREGROUND]
            if dims:
                probability = probability.flip([d - 1 for d in dims])
            total = probability if total is None else total + probability
        assert total is not None
        return total / len(flip_sets)

    def normalise(self, windows: torch.Tensor, stats: VolumeStats | None = None) -> torch.Tensor:
        """As in training: flip contrast if the model was trained so, then z-score each window on its own.

        With ``stats`` (a whole tomogram's mean and std) every window shares those instead.
        """
        return zscore_tensor(windows.float(), self.info.invert, stats, dtype=torch.float64)

    def predict_windows(
        self, windows: np.ndarray, normalised: bool = False, stats: VolumeStats | None = None
    ) -> np.ndarray:
        """(B, *box) windows -> (B, *box) float32 foreground probabilities, in one forward pass (per flip).

        ``normalised`` skips the normalisation (for inputs already z-scored, e.g. denoised targets).
        """
        x = torch.as_tensor(np.ascontiguousarray(windows, dtype=np.float32)).to(self.device)
        if not normalised:
            x = self.normalise(x, stats)
        with torch.inference_mode(), self._autocast():
            probability = self._foreground(x.unsqueeze(1))
        return probability.float().cpu().numpy()

    def predict_batches(
        self, images: np.ndarray, normalised: bool = False, on_progress: Progress | None = None
    ) -> np.ndarray:
        """(N, *box) subtomograms -> (N, *box) probabilities, ``batch_size`` at a time."""
        out = np.empty(images.shape, dtype=np.float32)
        step = self.settings.batch_size
        for start in range(0, images.shape[0], step):
            out[start : start + step] = self.predict_windows(images[start : start + step], normalised)
            if on_progress is not None:
                on_progress(min(step, images.shape[0] - start))
        return out

    # ---- masks ---------------------------------------------------------------------------------

    def segment(self, probabilities: np.ndarray, voxel_size: float | None = None) -> np.ndarray:
        """Probabilities of one volume on a grid of ``voxel_size`` A -> binary uint8 mask.

        Threshold (or with --smooth the blurred expected volume, smoothing.py), then --min-size.
        """
        if self.settings.smooth > 0:
            spacing = float(voxel_size if voxel_size is not None else self.info.voxel_size)
            mask = smoothed_mask(probabilities, self.settings.smooth, spacing)
        else:
            mask = (np.asarray(probabilities) > self.settings.threshold).astype(np.uint8)
        if self.settings.min_size > 1:
            mask = remove_small_components(mask, self.settings.min_size)
        return mask

    # ---- volumes and datasets ------------------------------------------------------------------

    def check_volume_shape(self, shape: Sequence[int], source: str) -> None:
        """A volume must be at least the model box along every axis."""
        if len(shape) != 3 or any(int(n) < b for n, b in zip(shape, self.box)):
            raise VoxudaInputError(
                f"{source}: volume shape {tuple(shape)} is smaller than the model box {self.box}; "
                f"resample it (voxuda patchify --resize) or use a model trained on a smaller box"
            )

    def check_dataset_box(self, dataset: Dataset) -> None:
        if dataset.box != self.box:
            raise VoxudaInputError(
                f"{dataset.source}: samples are {dataset.box} but the model box is {self.box}; cut them to the "
                f"model box (voxuda patchify --patch {self.box[0]}, with --resize to rescale), or pass the "
                "volumes as MRC files to predict them whole with sliding windows"
            )

    def input_voxel_size(self, header: float, source: str) -> float:
        """An input's voxel size: ``--input-voxel-size`` if given, else its header (refused when lost)."""
        return checked_voxel_size(header, self.settings.input_voxel_size, source)

    def needs_resampling(self, voxel_size: float | Sequence[float]) -> bool:
        """Whether an input's voxel size differs from the model's by more than 1 % (on any axis)."""
        reference = float(self.info.voxel_size)
        return any(differs(float(v), reference) for v in np.atleast_1d(voxel_size))

    def predict_volume(self, volume: np.ndarray, on_progress: Progress | None = None) -> np.ndarray:
        """Foreground probabilities of one (D, H, W) volume held in memory; sliding windows when larger than the box."""
        volume = np.asarray(volume, dtype=np.float32)
        self.check_volume_shape(volume.shape, "volume")
        if not np.isfinite(volume).all():
            raise VoxudaInputError("volume: contains NaN or Inf values; clean the data")
        if tuple(volume.shape) == self.box:
            probabilities = self.predict_windows(volume[None])[0]
            if on_progress is not None:
                on_progress(1)
            return probabilities
        stats = self._stats_of(volume) if self.settings.normalise == "tomogram" else None
        return sliding_window_array(
            volume,
            lambda windows: self.predict_windows(windows, stats=stats),
            self.box,
            self.settings.overlap,
            self.settings.batch_size,
            on_progress,
        )

    def predict_dataset(self, dataset: Dataset, on_progress: Progress | None = None) -> DatasetPrediction:
        """Every sample of a dataset (its box must be the model's) -> probabilities and masks."""
        self.check_dataset_box(dataset)
        voxel_size = self.input_voxel_size(dataset.voxel_size, dataset.source)
        if self.needs_resampling(voxel_size):
            log.info("%s: %.3f A resampled to the model's %.3f A", dataset.source, voxel_size, self.info.voxel_size)
            probabilities = predict_samples(self, dataset.images, voxel_size, on_progress)
        else:
            probabilities = self.predict_batches(dataset.images, on_progress=on_progress)
        masks = np.stack([self.segment(p, voxel_size) for p in probabilities])
        return DatasetPrediction(probabilities=probabilities, masks=masks)

    def stitch_parents(self, dataset: Dataset, probabilities: np.ndarray) -> Iterator[tuple[str, Volume, np.ndarray]]:
        """Patch probabilities of a patchified dataset -> ``(parent, probability Volume, mask)`` per parent.

        Patches are blended with the same Gaussian weights as sliding windows (they matter only
        where patches overlap), then resampled back to the parent's original grid when patchify
        resized it; the Volume carries the original voxel size and origin.
        """
        from voxuda_cli.patches import group_by_parent, parents_info, stitch

        if not dataset.is_patchified:
            raise VoxudaInputError(f"{dataset.source}: not a patchified dataset (no /coords and /parents)")
        infos = parents_info(dataset.attrs)
        weights = importance_map(self.box)
        assert dataset.parents is not None and dataset.coords is not None
        for parent, indices in group_by_parent(dataset.parents):
            coords = dataset.coords[indices]
            info = infos.get(parent)
            shape = info.shape if info else tuple(int(v) for v in (coords.max(axis=0) + np.array(self.box)))
            stitched = stitch(probabilities[indices], coords, shape, weights)
            if info is not None and tuple(info.original_shape) != tuple(info.shape):
                stitched = resample_probabilities(stitched, info.original_shape)
            voxel_size = info.original_voxel_size if info else (dataset.voxel_size,) * 3
            origin = info.origin if info else (0.0, 0.0, 0.0)
            volume = Volume(data=stitched, voxel_size=voxel_size, origin=origin)
            yield parent, volume, self.segment(stitched, float(np.mean(voxel_size)))

    # ---- whole tomograms -----------------------------------------------------------------------

    def with_input_voxel_size(self, volume: Volume, source: str) -> Volume:
        """The volume with its voxel size checked (lost headers refused) or set by ``--input-voxel-size``."""
        self.input_voxel_size(volume.isotropic_voxel_size, source)
        if self.settings.input_voxel_size is None:
            return volume
        return replace(volume, voxel_size=(float(self.settings.input_voxel_size),) * 3)

    def _stats_of(self, volume: np.ndarray, release: bool = False) -> VolumeStats:
        return stream_stats(volume, self.info.invert, "volume", release)

    def predict_tomogram(
        self,
        input_path: Path | str,
        output_path: Path | str,
        probabilities_path: Path | str | None = None,
        on_progress: Progress | None = None,
        scan: VolumeStats | None = None,
        label: str | None = None,
    ) -> TomogramPrediction:
        """Segment an MRC volume of any size (each axis at least the box) into an MRC mask of the same grid.

        The input is read slab by slab from a memory map and the outputs are written into memory
        maps (renamed into place at the end), so memory stays bounded by one slab of windows.
        ``probabilities_path`` also writes the float32 foreground probability. The outputs keep the
        input's voxel size, origin and labels. ``scan`` is a :func:`voxuda_cli.normalise.stream_stats` result if one
        was made already (the input is checked for NaN first otherwise).
        """
        started = time.perf_counter()
        input_path = Path(input_path)
        volume = self.with_input_voxel_size(read_mrc(input_path, mmap=True, check=False), str(input_path))
        if self.needs_resampling(volume.voxel_size):
            target = Path(probabilities_path) if probabilities_path is not None else None
            return predict_tomogram_rescaled(
                self, input_path, Path(output_path), target, volume.voxel_size, on_progress, label
            )
        data = volume.data
        self.check_volume_shape(data.shape, str(input_path))
        if scan is None:
            scan = stream_stats(data, self.info.invert, str(input_path), release=True)
        stats = scan if self.settings.normalise == "tomogram" else None
        shape = tuple(int(n) for n in data.shape)
        plan = WindowPlan.make(shape, self.box, self.settings.overlap)
        label = label or f"voxuda predict {self.model_path.name if self.model_path else 'model'}"
        released = {"input": 0}
        outputs = [str(output_path)] + ([str(probabilities_path)] if probabilities_path else [])
        with contextlib.ExitStack() as stack:
            mask_map = stack.enter_context(
                create_mrc_memmap(output_path, shape, volume, np.int8, label, after_chunk=release_rows)
            )
            probability_map = None
            if probabilities_path is not None:
                probability_map = stack.enter_context(
                    create_mrc_memmap(probabilities_path, shape, volume, np.float32, label, after_chunk=release_rows)
                )

            writer = _RowWriter(data, mask_map, probability_map, self.settings.threshold)

            def release_input(z: int) -> None:
                release_rows(data, released["input"], z)
                released["input"] = z

            sliding_window(
                data,
                lambda windows: self.predict_windows(windows, stats=stats),
                self.box,
                self.settings.overlap,
                self.settings.batch_size,
                writer,
                on_progress,
                release_input,
            )
            removed = 0
            if self.settings.min_size > 1:
                removed = remove_small_components_chunked(
                    mask_map, self.settings.min_size, release=lambda a, b: release_rows(mask_map, a, b)
                )
            writer.preview["mask"] = np.array(mask_map[writer.middle], dtype=np.uint8)[None]
        voxels = math.prod(shape)
        return TomogramPrediction(
            name=input_path.stem,
            shape=shape,  # type: ignore[arg-type]
            windows=plan.n_windows,
            foreground_fraction=(writer.foreground - removed) / voxels,
            seconds=time.perf_counter() - started,
            outputs=outputs,
            removed_voxels=removed,
            preview=writer.preview,
        )


class _RowWriter:
    """Writes blended probability rows of a tomogram into its mask (and probability) maps, in z order.

    Each written slab's pages go back to the OS at once; the central slice is kept for the preview.
    """

    def __init__(
        self, data: np.ndarray, mask_map: np.ndarray, probability_map: np.ndarray | None, threshold: float
    ) -> None:
        self.data, self.mask_map, self.probability_map, self.threshold = data, mask_map, probability_map, threshold
        self.middle = int(data.shape[0]) // 2
        self.foreground = 0
        self.preview: dict[str, np.ndarray] = {}

    def __call__(self, z0: int, rows: np.ndarray) -> None:
        z1 = z0 + rows.shape[0]
        mask = rows > self.threshold
        self.mask_map[z0:z1] = mask
        self.foreground += int(mask.sum())
        release_rows(self.mask_map, z0, z1)
        if self.probability_map is not None:
            self.probability_map[z0:z1] = rows
            release_rows(self.probability_map, z0, z1)
        if z0 <= self.middle < z1:
            self.preview["input"] = np.array(self.data[self.middle], dtype=np.float32)[None]
            self.preview["probability"] = rows[self.middle - z0][None].copy()
