"""Predictor: a trained model file -> foreground probabilities and masks of subtomograms, datasets and tomograms.

Usable from Python without the CLI (nnU-Net's predictor is the model)::

    from voxuda_cli.inference import Predictor, PredictSettings
    predictor = Predictor("run/", tta=True, device="cpu")             # or Predictor("run/", PredictSettings(...))
    probabilities = predictor.predict_volume(volume)               # any (D, H, W) at least the box
    result = predictor.predict_dataset(read_dataset(["target.h5"]))
    predictor.predict_tomogram("tomo.mrc", "tomo_mask.mrc")        # streamed, bounded memory

The predictor composes the parts of inference (docs/ARCHITECTURE.md): the network function
(network.py: normalise, TTA, forward), a window plan (plan.py: large windows whose cores tile the
grid; or sliding_window.py: box-sized windows blended, ``--blend gaussian``), the engine that runs
one over the other (engine.py) and an output grid (grids.py: memory, or MRC memory maps with the
threshold and --min-size). Inputs at another voxel size go through the resampling wrapper
(rescaled.py) around the same engine.

Normalisation (docs/METHOD.md): subtomograms are z-scored one by one, as in training; a whole
tomogram by default locally, with the mean and std of blocks of twice the model box (one streamed
pass) interpolated between block centres, so that a voxel's input does not depend on the window
and a slow change of background (uneven ice) is followed; ``normalise="tomogram"`` uses the whole
tomogram's mean and std, ``normalise="window"`` z-scores each window.
Foreground is class 1; masks are ``probability > threshold`` (or ``--smooth``, smoothing.py).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from voxuda_cli.device import resolve_device
from voxuda_cli.errors import VoxudaInputError
from voxuda_cli.inference.components import remove_small_components
from voxuda_cli.inference.engine import Grid, run_blended, run_tiles
from voxuda_cli.inference.grids import MemoryGrid, MrcGrid
from voxuda_cli.inference.network import WindowNetwork
from voxuda_cli.inference.plan import TilePlan, window_caps
from voxuda_cli.inference.rescaled import predict_samples, predict_tomogram_rescaled
from voxuda_cli.inference.settings import PredictSettings
from voxuda_cli.inference.sliding_window import WindowPlan
from voxuda_cli.inference.smoothing import smoothed_mask
from voxuda_cli.io.dataset import Dataset
from voxuda_cli.io.memory import release_rows
from voxuda_cli.io.mrc import read_mrc
from voxuda_cli.io.sources import volume_name
from voxuda_cli.io.volume import Volume
from voxuda_cli.models import int8, onednn
from voxuda_cli.models.int8 import Int8VoxResNet
from voxuda_cli.models.serialization import ModelInfo, load_model, resolve_model_path
from voxuda_cli.models.speed import autocast_dtype, prepare_network
from voxuda_cli.models.voxresnet import VoxResNet
from voxuda_cli.normalise import LocallyNormalised, VolumeStats, stream_stats
from voxuda_cli.patches import extract_patch, group_by_parent, parents_info, sample_boxes, stitch
from voxuda_cli.progress import Progress
from voxuda_cli.resample import (
    back_to,
    checked_voxel_size,
    differs,
    fit_to_box,
    fourier_resample,
    model_shape,
    pad_to,
    resample_probabilities,
)

log = logging.getLogger("voxuda")

# --int8's calibration (models/int8.py): what each input's activation scales are taken from
CALIBRATION_BOXES_PER_AXIS = 2  # a volume: 8 model-box windows spread over it
CALIBRATION_SAMPLES = 16  # a dataset: samples spread over it
# --normalise local: blocks of twice the model box per axis (64 for 32^3), about the context a
# training box was z-scored over, with room for its neighbours
LOCAL_BLOCK_BOXES = 2


@dataclass
class DatasetPrediction:
    """Per-sample foreground probabilities (float32) and masks (uint8), aligned with the dataset."""

    probabilities: np.ndarray
    masks: np.ndarray
    # Patchified datasets: each parent's probabilities on the patch grid, predicted whole by the engine.
    parents: dict[str, np.ndarray] = field(default_factory=dict)

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
    window: tuple[int, ...] = ()  # the window edge per axis on the model's grid
    computed: float = 1.0  # voxels the network computed over the tomogram's (on the model's grid)

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
            "window": list(self.window),
            "computed_per_voxel": self.computed,
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
        self.int8 = self._int8_network()
        self._calibrated: WindowNetwork | None = None

    def _int8_network(self) -> Int8VoxResNet | None:
        """With ``--int8``: the network in 8 bits (models/int8.py), uncalibrated; None without."""
        if not self.settings.int8:
            return None
        if self.info.architecture.num_classes != 2:
            raise VoxudaInputError(f"--int8: for two-class models; this one has {self.info.architecture.num_classes}")
        if self.device.type != "cpu" or not int8.supported():
            raise VoxudaInputError(
                f"--int8: runs on x86-64 CPUs with oneDNN (here: {self.device}, torch {torch.__version__}); "
                "drop --int8 (on a GPU, --amp)"
            )
        if not int8.fast_here():
            log.warning("--int8: this CPU has no 8-bit dot products (VNNI, AMX); int8 may be slower than float32")
        return Int8VoxResNet(cast(VoxResNet, self.network))

    @property
    def numerics(self) -> str:
        """What the convolutions compute in: int8, bfloat16 / float16 (autocast) or float32."""
        if self.int8 is not None:
            return "int8"
        return str(self.amp_dtype or torch.float32).removeprefix("torch.")

    def with_settings(self, **changes: Any) -> Predictor:
        """The same loaded network with some settings changed (no reload)."""
        other = Predictor.__new__(Predictor)
        other.__dict__.update(self.__dict__)
        other.settings = replace(self.settings, **changes)
        if "amp" in changes:
            other.amp_dtype = autocast_dtype(other.settings.amp, other.device)
        if "int8" in changes:
            other.int8 = other._int8_network()
        other._calibrated = None  # a calibrated function carries the settings it was made under
        return other

    @property
    def box(self) -> tuple[int, int, int]:
        return tuple(int(b) for b in self.info.box)  # type: ignore[return-value]  # the model box, 3 ints

    @property
    def model_voxel_size(self) -> float:
        return float(self.info.voxel_size)

    @property
    def batch_size(self) -> int:
        return int(self.settings.batch_size)

    # ---- windows -------------------------------------------------------------------------------

    @property
    def function(self) -> WindowNetwork:
        """The network function (network.py) under the current settings and model info (with --int8, the
        one calibrated for the input being predicted, :meth:`calibrated_on`)."""
        if self._calibrated is not None:
            return self._calibrated
        return WindowNetwork(self.network, self.info, self.device, self.settings.tta, self.amp_dtype, self.int8)

    @contextlib.contextmanager
    def calibrated_on(
        self, samples: Callable[[], np.ndarray], stats: VolumeStats | None = None, normalised: bool = False
    ) -> Iterator[None]:
        """Inside, --int8's activation scales come from ``samples()`` (windows as predict_windows takes
        them): one calibration per input, the outermost call's, whatever path its windows take."""
        if self.int8 is None or self._calibrated is not None:
            yield
            return
        self._calibrated = self.function.calibrated(samples(), stats, normalised)
        try:
            yield
        finally:
            self._calibrated = None

    def normalise(self, windows: torch.Tensor, stats: VolumeStats | None = None) -> torch.Tensor:
        """As in training: flip contrast if the model was trained so, then z-score each window (or by ``stats``)."""
        return self.function.normalise(windows, stats)

    def predict_windows(
        self, windows: np.ndarray, normalised: bool = False, stats: VolumeStats | None = None
    ) -> np.ndarray:
        """(B, d, h, w) windows -> (B, d, h, w) float32 foreground probabilities (network.py)."""
        return self.function(windows, stats, normalised)

    def predict_batches(
        self, images: np.ndarray, normalised: bool = False, on_progress: Progress | None = None
    ) -> np.ndarray:
        """(N, *box) subtomograms -> (N, *box) probabilities, ``batch_size`` at a time."""
        out = np.empty(images.shape, dtype=np.float32)
        step = self.settings.batch_size
        with self.calibrated_on(lambda: _spread_samples(images), normalised=normalised):
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
        """Foreground probabilities of one (D, H, W) volume held in memory (the engine when larger than the box).

        ``on_progress`` counts voxels.
        """
        volume = np.asarray(volume, dtype=np.float32)
        self.check_volume_shape(volume.shape, "volume")
        if not np.isfinite(volume).all():
            raise VoxudaInputError("volume: contains NaN or Inf values; clean the data")
        if tuple(volume.shape) == self.box:
            probabilities = self.predict_windows(volume[None])[0]
            if on_progress is not None:
                on_progress(probabilities.size)
            return probabilities
        grid = MemoryGrid(volume.shape)
        self.run_engine(volume, grid, None, on_progress)
        return grid.probabilities

    # ---- the engine ----------------------------------------------------------------------------

    def window_limits(self, shape: Sequence[int]) -> tuple[int, int, int]:
        """Per axis, the largest window edge for a volume of ``shape``: ``--window``, or (0) edges (multiples
        of 8) whose forward fits ``--memory`` GiB, a thin volume's short axis whole (plan.window_caps)."""
        if self.settings.window > 0:
            return (max(int(self.settings.window), min(self.box)),) * 3
        # the whole-window estimate first; a streamed forward's depends on the depth (a few rounds settle it)
        depth: int | None = None
        for _ in range(3):
            voxels = self.settings.memory * 2**30 / self._bytes_per_voxel(depth)
            caps = window_caps(shape, voxels, VoxResNet.downsampling, min(self.box))
            depth = caps[0]
        return caps

    def _bytes_per_voxel(self, depth: int | None) -> int:
        """Working memory of this predictor's forward per window voxel: the 8-bit forward's with --int8, else
        the float one's, streamed where it streams (onednn.runs_on) on a window ``depth`` deep (None: unknown)."""
        if self.int8 is not None:
            return int8.inference_bytes_per_voxel(self.info.architecture.width)
        streamed = depth if onednn.runs_on(self.device, self.amp_dtype) else None
        return self.info.architecture.inference_bytes_per_voxel(streamed)

    def scan(self, volume: np.ndarray, source: str | None = None, release: bool = False) -> VolumeStats:
        """One streamed pass over ``volume`` (a memory map is fine): its statistics as the engine normalises
        by them, the block statistics too under ``--normalise local``; ``source`` names the file for the
        NaN/Inf check, ``release`` gives its pages back as rows finish (normalise.stream_stats)."""
        block = LOCAL_BLOCK_BOXES * max(self.box) if self.settings.normalise == "local" else None
        return stream_stats(volume, self.info.invert, source, release, block)

    def plan(self, shape: Sequence[int]) -> TilePlan | WindowPlan:
        """The window plan of a volume of ``shape`` (on the model's grid) under the settings."""
        if self.settings.blend == "gaussian":
            return WindowPlan.make(shape, self.box, self.settings.overlap)
        return TilePlan.make(shape, self.window_limits(shape), self.settings.margin, minimum=min(self.box))

    def run_engine(
        self,
        volume: np.ndarray,
        grid: Grid,
        scan: VolumeStats | None = None,
        on_progress: Progress | None = None,
        release: bool = False,
    ) -> TilePlan | WindowPlan:
        """Predict ``volume`` (on the model's grid; a memory map is fine) into ``grid``; returns the plan.

        Normalisation: with ``normalise="tomogram"`` the volume's streamed statistics, ``"local"``
        reads the volume through a local z-scoring by its block statistics (normalise.LocallyNormalised):
        both from ``scan`` (:meth:`scan`), streamed here when not given; ``release`` gives the input's
        pages back as rows finish.
        """
        stats, source, normalised = None, volume, False
        mode = self.settings.normalise
        if mode != "window" and (scan is None or (mode == "local" and scan.local is None)):
            scan = self.scan(volume, None, release)
        if mode == "tomogram":
            stats = scan
        elif mode == "local":
            assert scan is not None and scan.local is not None
            # read as the volume is: slicing and shape are all the engine and the samples use
            source, normalised = cast(np.ndarray, LocallyNormalised(volume, scan.local, self.info.invert)), True
        plan = self.plan(volume.shape)
        samples = functools.partial(sample_boxes, source, self.box, CALIBRATION_BOXES_PER_AXIS)
        with self.calibrated_on(samples, stats, normalised):
            function = functools.partial(self.function, stats=stats, normalised=normalised)
            if isinstance(plan, WindowPlan):
                release_below = _input_releaser(volume) if release else None
                run_blended(source, function, self.box, self.settings.overlap, grid, self.settings.batch_size,
                            on_progress, release_below)  # fmt: skip
            else:
                release_rows_of = functools.partial(release_rows, volume) if release else None
                run_tiles(source, function, plan, grid, self._tile_batch(plan), on_progress, release_rows_of)
        return plan

    def _tile_batch(self, plan: TilePlan) -> int:
        """Windows per forward: --batch-size, but no more than --memory holds."""
        per_voxel = self._bytes_per_voxel(plan.edges[0])
        per_window = math.prod(plan.edges) * per_voxel
        return max(1, min(int(self.settings.batch_size), int(self.settings.memory * 2**30 // per_window)))

    def predict_dataset(self, dataset: Dataset, on_progress: Progress | None = None) -> DatasetPrediction:
        """Every sample of a dataset (its box must be the model's) -> probabilities and masks.

        A patchified dataset is predicted parent by parent: each parent is put back together from
        its patches and run through the engine whole (every voxel once, with its real neighbours
        instead of a patch border), and each patch's probabilities are cut from its parent's.
        ``on_progress`` counts samples.
        """
        self.check_dataset_box(dataset)
        voxel_size = self.input_voxel_size(dataset.voxel_size, dataset.source)
        parents: dict[str, np.ndarray] = {}
        with self.calibrated_on(lambda: self._on_model_grid(_spread_samples(dataset.images), voxel_size)):
            if dataset.is_patchified:
                probabilities, parents = self._predict_parents(dataset, voxel_size, on_progress)
            elif self.needs_resampling(voxel_size):
                log.info(
                    "%s: %.3f A resampled to the model's %.3f A", dataset.source, voxel_size, self.model_voxel_size
                )
                probabilities = predict_samples(self, dataset.images, voxel_size, on_progress)
            else:
                probabilities = self.predict_batches(dataset.images, on_progress=on_progress)
        masks = np.stack([self.segment(p, voxel_size) for p in probabilities])
        return DatasetPrediction(probabilities=probabilities, masks=masks, parents=parents)

    def _on_model_grid(self, images: np.ndarray, voxel_size: float) -> np.ndarray:
        """Samples at ``voxel_size`` as model-box windows on the model's grid (resampled, cropped or padded)."""
        if not self.needs_resampling(voxel_size):
            return images
        return fit_to_box(images, voxel_size, self.model_voxel_size, self.box)[0]

    def _predict_parents(
        self, dataset: Dataset, voxel_size: float, on_progress: Progress | None
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        assert dataset.parents is not None and dataset.coords is not None
        probabilities = np.empty(dataset.images.shape, dtype=np.float32)
        parents: dict[str, np.ndarray] = {}
        for parent, indices in group_by_parent(dataset.parents):
            coords = dataset.coords[indices]
            image = stitch(dataset.images[indices], coords, _parent_grid(dataset, parent, coords))
            parents[parent] = self.predict_at(image, voxel_size)
            for index, origin in zip(indices, coords):
                probabilities[index] = extract_patch(parents[parent], origin, dataset.box[0])
            if on_progress is not None:
                on_progress(len(indices))
        return probabilities, parents

    def predict_at(self, volume: np.ndarray, voxel_size: float) -> np.ndarray:
        """One volume in memory at ``voxel_size`` A -> probabilities on its own grid.

        Resampled to the model's voxel size around the engine where they differ (and back), and
        edge-padded on the far side where smaller than the box.
        """
        resampled = self.needs_resampling(voxel_size)
        shape = model_shape(volume.shape, voxel_size, self.model_voxel_size) if resampled else volume.shape
        on_model = fourier_resample(volume, shape) if resampled else np.asarray(volume, dtype=np.float32)
        padded, inside = pad_to(on_model, [max(n, b) for n, b in zip(on_model.shape, self.box)])
        probabilities = self.predict_volume(padded)[inside]
        return back_to(probabilities, volume.shape) if resampled else probabilities

    def parent_volumes(
        self, dataset: Dataset, prediction: DatasetPrediction
    ) -> Iterator[tuple[str, Volume, np.ndarray]]:
        """A patchified dataset's parents -> ``(parent, probability Volume, mask)`` on each parent's own grid.

        The probabilities are resampled back to the parent's original grid where patchify resized
        it; the Volume carries the original voxel size and origin.
        """
        if not dataset.is_patchified:
            raise VoxudaInputError(f"{dataset.source}: not a patchified dataset (no /coords and /parents)")
        infos = parents_info(dataset.attrs)
        for parent, probabilities in prediction.parents.items():
            info = infos.get(parent)
            if info is not None and tuple(info.original_shape) != tuple(info.shape):
                probabilities = resample_probabilities(probabilities, info.original_shape)
            voxel_size = info.original_voxel_size if info else (dataset.voxel_size,) * 3
            origin = info.origin if info else (0.0, 0.0, 0.0)
            volume = Volume(data=probabilities, voxel_size=voxel_size, origin=origin)
            yield parent, volume, self.segment(probabilities, float(np.mean(voxel_size)))

    # ---- whole tomograms -----------------------------------------------------------------------

    def with_input_voxel_size(self, volume: Volume, source: str) -> Volume:
        """The volume with its voxel size checked (lost headers refused) or set by ``--input-voxel-size``."""
        self.input_voxel_size(volume.isotropic_voxel_size, source)
        if self.settings.input_voxel_size is None:
            return volume
        return replace(volume, voxel_size=(float(self.settings.input_voxel_size),) * 3)

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

        The input is read window by window from a memory map and the outputs are written into memory
        maps (renamed into place at the end, grids.py), so memory stays bounded by a window's work.
        ``probabilities_path`` also writes the float32 foreground probability. The outputs keep the
        input's voxel size, origin and labels. ``scan`` is a :meth:`scan` of the input
        if one was made already (the input is checked for NaN first otherwise). Inputs at
        another voxel size go through rescaled.py around the same engine. ``on_progress`` counts voxels.
        """
        started = time.perf_counter()
        input_path = Path(input_path)
        volume = self.with_input_voxel_size(read_mrc(input_path, mmap=True, check=False), str(input_path))
        label = label or f"voxuda predict {self.model_path.name if self.model_path else 'model'}"
        settings = self.settings
        target = Path(probabilities_path) if probabilities_path is not None else None
        grid = functools.partial(
            MrcGrid, Path(output_path), volume.shape, volume, settings.threshold, target, settings.min_size, label
        )
        if self.needs_resampling(volume.voxel_size):

            def predict(data: np.ndarray, into: Grid, progress: Progress | None) -> None:
                self.run_engine(data, into, None, progress, release=True)

            written = predict_tomogram_rescaled(volume, self.model_voxel_size, predict, grid, on_progress)
            plan = self.plan(model_shape(volume.shape, volume.voxel_size, self.model_voxel_size))
        else:
            self.check_volume_shape(volume.shape, str(input_path))
            if scan is None:
                scan = self.scan(volume.data, str(input_path), release=True)
            with grid() as written:
                plan = self.run_engine(volume.data, written, scan, on_progress, release=True)
        middle = volume.shape[0] // 2
        preview = {**written.preview, "input": np.array(volume.data[middle], dtype=np.float32)[None]}
        return TomogramPrediction(
            name=volume_name(input_path),
            shape=tuple(int(n) for n in volume.shape),  # type: ignore[arg-type]  # a 3D shape: mypy cannot count a generator's tuple
            windows=plan.n_windows,
            foreground_fraction=written.foreground_fraction,
            seconds=time.perf_counter() - started,
            outputs=written.paths,
            removed_voxels=written.removed,
            preview=preview,
            window=plan.edges,
            computed=plan.computed_voxels / math.prod(plan.shape),
        )


def _spread_samples(images: np.ndarray) -> np.ndarray:
    """Up to CALIBRATION_SAMPLES samples of a dataset, evenly spread over it."""
    return images[np.unique(np.linspace(0, len(images) - 1, min(len(images), CALIBRATION_SAMPLES)).round().astype(int))]


def _parent_grid(dataset: Dataset, parent: str, coords: np.ndarray) -> tuple[int, ...]:
    """The shape patchify cut ``parent`` from (recorded; else the patches' extent)."""
    info = parents_info(dataset.attrs).get(parent)
    if info is not None:
        return tuple(info.shape)
    return tuple(int(v) for v in coords.max(axis=0) + np.array(dataset.box))


def _input_releaser(volume: np.ndarray) -> Callable[[int], None]:
    """``release(z)``: give the pages of the volume's rows below ``z`` back to the OS, each row once."""
    done = {"rows": 0}

    def release(z: int) -> None:
        if z > done["rows"]:
            release_rows(volume, done["rows"], z)
            done["rows"] = z

    return release
