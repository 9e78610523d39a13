"""``predict`` as one job: classify the inputs, check everything, then write the outputs.

Inputs and what comes out (decided by the output's suffix):

- an HDF5 dataset of model-box samples -> ``-o X.h5``: a prediction dataset (/masks, /probabilities
  with --probabilities, /images, names, classes, /coords and /parents carried);
  ``-o FOLDER``: one ``<name>.mrc`` per sample;
- a patchified dataset (/coords, /parents) -> ``-o FOLDER`` (or ``X.mrc`` for one parent): stitched
  back to one MRC per parent on its original grid, with its voxel size and origin;
  ``-o X.h5``: per-patch predictions, coordinates carried;
- MRC files of the model box -> as a dataset (``X.h5``) or ``FOLDER/<stem>.mrc`` keeping each header;
- MRC files larger than the box (whole tomograms) -> ``FOLDER/<stem>.mrc`` (or ``X.mrc`` for one),
  the engine (large windows by default, engine.py), streamed in bounded memory;
  ``-o X.zarr``: one OME-Zarr labels image; ``-o copick.json:segmentation=NAME:user=U:session=S``:
  each run's segmentation in a copick project (io.copick), at the tomogram's voxel spacing.

``--probabilities`` adds ``<stem>_probabilities.mrc`` (float32) next to each MRC mask. Every input
is read and checked (model box, NaN, shapes) before anything is written.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from voxuda_cli.errors import VoxudaInputError
from voxuda_cli.inference.predictor import DatasetPrediction, Predictor, TomogramPrediction
from voxuda_cli.io.copick import CopickLocator, is_copick_locator, parse_locator
from voxuda_cli.io.dataset import CARRIED_ATTRS, Dataset, DatasetWriter, is_h5_path, read_h5_dataset
from voxuda_cli.io.mrc import is_mrc_path, read_mrc, write_mrc
from voxuda_cli.io.outputs import ensure_folder, no_empty_folders_left
from voxuda_cli.io.sources import (
    expand_mrc_paths,
    in_shard,
    probabilities_path,
    read_dataset,
    single_dataset,
    volume_name,
)
from voxuda_cli.io.volume import Volume
from voxuda_cli.io.zarr import is_zarr_path
from voxuda_cli.normalise import VolumeStats
from voxuda_cli.patches import sample_boxes
from voxuda_cli.polarity import resolve_polarity
from voxuda_cli.progress import Progress
from voxuda_cli.resample import model_shape

log = logging.getLogger("voxuda")

POLARITY_BOXES_PER_AXIS = 4  # 64 model-box windows of each tomogram (a few MB read)

PREVIEW_ROWS = 4


def peak_memory_mb() -> float:
    """The process's peak resident memory so far (MiB; Linux and macOS)."""
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def output_kind(output: Path) -> str:
    """``h5`` (a dataset), ``mrc`` (one MRC file), ``zarr`` (one OME-Zarr image), ``copick`` (a
    project's segmentations) or ``folder`` (MRC files by input)."""
    if is_copick_locator(output):
        return "copick"
    if is_h5_path(output):
        return "h5"
    if is_mrc_path(output):
        return "mrc"
    if is_zarr_path(output):
        return "zarr"
    if output.exists() and not output.is_dir():
        raise VoxudaInputError(f"{output}: exists and is not a folder; pass a folder, an .h5 or an .mrc path")
    return "folder"


@dataclass
class PredictionJob:
    """Checked inputs of one ``predict`` run; :meth:`run` writes the outputs."""

    predictor: Predictor
    output: Path
    kind: str  # output kind: h5 | mrc | folder
    dataset: Dataset | None = None  # an HDF5 dataset, or the model-box MRC files read as one
    headers: dict[str, Volume] = field(default_factory=dict)  # MRC inputs' geometry (no data), by name
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)  # MRC inputs' shapes on the model's grid
    tomograms: list[tuple[Path, VolumeStats]] = field(default_factory=list)
    provenance: str = ""
    paste: Path | None = None  # folder for one label MRC per parent tomogram of an extract dataset
    copick: CopickLocator | None = None  # -o a copick project's segmentations

    @property
    def total(self) -> int:
        """Work for a progress bar, in voxels on the model's grid: dataset samples and tomograms."""
        samples = len(self.dataset) * math.prod(self.dataset.box) if self.dataset is not None else 0
        return samples + sum(math.prod(self.shapes[volume_name(path)]) for path, _ in self.tomograms)

    def run(self, on_progress: Progress | None = None, preview: Path | None = None) -> dict[str, Any]:
        """Predict every input and write the outputs; returns the summary (what --json prints).

        Stopped by an error or a signal, it leaves no empty output folder behind.
        """
        folders = [self.output if self.kind == "folder" else self.output.parent] if self.kind != "copick" else []
        folders += [self.paste] if self.paste is not None else []
        with no_empty_folders_left(*folders):
            return self._run(on_progress, preview)

    def _run(self, on_progress: Progress | None, preview: Path | None) -> dict[str, Any]:
        started = time.perf_counter()
        settings = self.predictor.settings
        records: list[dict[str, Any]] = []
        written: list[str] = []
        previews: dict[str, list[np.ndarray]] = {"input": [], "probability": [], "mask": []}
        labels: list[str] = []
        if self.dataset is not None:
            records, written = self._run_dataset(on_progress, previews, labels)
        for path, scan in self.tomograms:
            advance = (lambda n, name=volume_name(path): on_progress(n, name)) if on_progress else None
            result = self._predict_tomogram(path, scan, advance)
            records.append(result.to_dict())
            written.extend(result.outputs)
            if len(labels) < PREVIEW_ROWS:
                labels.append(result.name)
                for key in previews:
                    previews[key].append(result.preview[key])
        if preview is not None and labels:
            from voxuda_cli.plots import save_montage

            save_montage(preview, previews, labels, title=f"predict: {self._model_name()}")
            written.append(str(preview))
        voxels = sum(math.prod(r["shape"]) for r in records)
        foreground = sum(r["foreground_fraction"] * math.prod(r["shape"]) for r in records)
        return {
            "model": self._model_name(),
            "weights": settings.use,
            "device": str(self.predictor.device),
            "numerics": self.predictor.numerics,
            "output": str(self.output),
            "outputs": written,
            "threshold": settings.threshold,
            "window": settings.window,
            "margin": settings.margin,
            "blend": settings.blend,
            "overlap": settings.overlap,
            "tta": settings.tta,
            "min_size": settings.min_size,
            "normalise": settings.normalise,
            "volumes": records,
            "foreground_fraction": foreground / voxels if voxels else 0.0,
            "seconds": (seconds := time.perf_counter() - started),
            "mvoxel_per_s": voxels / 1e6 / max(seconds, 1e-9),
            "peak_memory_mb": peak_memory_mb(),
        }

    def _predict_tomogram(self, path: Path, scan: VolumeStats, advance: Progress | None) -> TomogramPrediction:
        """One whole tomogram into its MRC mask, or (``-o X.zarr``) through a scratch MRC into OME-Zarr."""
        with_probabilities = self.predictor.settings.probabilities
        if self.kind == "copick":
            return self._predict_into_copick(path, scan, advance)
        if self.kind != "zarr":
            target = self.output if self.kind == "mrc" else self.output / f"{volume_name(path)}.mrc"
            probabilities = probabilities_path(target) if with_probabilities else None
            return self.predictor.predict_tomogram(path, target, probabilities, advance, scan, label=self._label())
        from voxuda_cli.io.mrc import mrc_to_ome_zarr

        ensure_folder(self.output.parent)
        with tempfile.TemporaryDirectory(dir=self.output.parent, prefix=".voxuda-predict-") as folder:
            target = Path(folder) / f"{volume_name(path)}.mrc"
            probabilities = probabilities_path(target) if with_probabilities else None
            result = self.predictor.predict_tomogram(path, target, probabilities, advance, scan, label=self._label())
            mrc_to_ome_zarr(target, self.output, label="mask")  # an NGFF labels image: napari shows labels
            result.outputs = [str(self.output)]
            if probabilities is not None:
                mrc_to_ome_zarr(probabilities, probabilities_path(self.output))
                result.outputs.append(str(probabilities_path(self.output)))
        return result

    def _predict_into_copick(self, path: Path, scan: VolumeStats, advance: Progress | None) -> TomogramPrediction:
        """One tomogram through a scratch MRC (the engine writes memory-mapped) into its run's segmentation."""
        from voxuda_cli.io.copick import write_segmentation

        assert self.copick is not None
        with tempfile.TemporaryDirectory(prefix=".voxuda-predict-") as folder:
            target = Path(folder) / f"{volume_name(path)}.mrc"
            result = self.predictor.predict_tomogram(path, target, None, advance, scan, label=self._label())
            mask = read_mrc(target, mmap=True, check=False)
            stored = write_segmentation(self.copick, volume_name(path), mask.data, mask.isotropic_voxel_size)
        result.outputs = [stored]
        return result

    def _model_name(self) -> str:
        path = self.predictor.model_path
        return str(path) if path is not None else "<network>"

    def _label(self) -> str:
        name = self.predictor.model_path.parent.name if self.predictor.model_path else "network"
        return f"voxuda predict {name} thr {self.predictor.settings.threshold}"

    def _run_dataset(
        self, on_progress: Progress | None, previews: dict[str, list[np.ndarray]], labels: list[str]
    ) -> tuple[list[dict[str, Any]], list[str]]:
        dataset = self.dataset
        assert dataset is not None
        box = math.prod(dataset.box)
        advance = (lambda n: on_progress(n * box, Path(dataset.source).name)) if on_progress else None
        prediction = self.predictor.predict_dataset(dataset, advance)
        picks = np.unique(np.linspace(0, len(dataset) - 1, min(PREVIEW_ROWS, len(dataset))).astype(int))
        for index in picks:
            labels.append(dataset.names[index])
            previews["input"].append(dataset.images[index])
            previews["probability"].append(prediction.probabilities[index])
            previews["mask"].append(prediction.masks[index])
        pasted = self._paste(dataset, prediction)
        if self.kind == "h5":
            self._write_dataset(dataset, prediction)
            return [_sample_record(dataset, prediction, i) for i in range(len(dataset))], [str(self.output), *pasted]
        records, written = (self._write_parents if dataset.is_patchified else self._write_samples)(dataset, prediction)
        return records, written + pasted

    def _paste(self, dataset: Dataset, prediction: DatasetPrediction) -> list[str]:
        """``--paste FOLDER``: the boxes' segmentations back in their tomograms (inference.paste)."""
        if self.paste is None:
            return []
        from voxuda_cli.inference.paste import paste_predictions

        settings = self.predictor.settings
        return paste_predictions(
            dataset, prediction.probabilities, self.paste, settings.threshold, settings.probabilities, self._label()
        )

    def _write_dataset(self, dataset: Dataset, prediction: DatasetPrediction) -> None:
        keep = {k: v for k, v in dataset.attrs.items() if k in CARRIED_ATTRS}
        attrs = {"provenance": self.provenance, "threshold": self.predictor.settings.threshold, **keep}
        with_probabilities = self.predictor.settings.probabilities
        with DatasetWriter(self.output, dataset.box, dataset.voxel_size, "prediction", attrs) as writer:
            for index, name in enumerate(dataset.names):
                writer.append(
                    dataset.images[index],
                    name,
                    mask=prediction.masks[index],
                    probabilities=prediction.probabilities[index] if with_probabilities else None,
                    class_name=dataset.classes[index] if dataset.classes else None,
                    coords=dataset.coords_at(index),
                    parent=dataset.parents[index] if dataset.parents else None,
                )

    def _mrc_target(self, name: str) -> Path:
        return self.output if self.kind == "mrc" else self.output / f"{name}.mrc"

    def _write_volume(self, name: str, like: Volume, probabilities: np.ndarray, mask: np.ndarray) -> list[str]:
        target = self._mrc_target(name)
        write_mrc(target, like.with_data(mask.astype(np.int8)), label=self._label())
        written = [str(target)]
        if self.predictor.settings.probabilities:
            write_mrc(probabilities_path(target), like.with_data(probabilities.astype(np.float32)), self._label())
            written.append(str(probabilities_path(target)))
        return written

    def _write_samples(self, dataset: Dataset, prediction: DatasetPrediction) -> tuple[list[dict[str, Any]], list[str]]:
        records, written = [], []
        for index, name in enumerate(dataset.names):
            like = self.headers.get(name) or Volume(dataset.images[index], voxel_size=(dataset.voxel_size,) * 3)
            written += self._write_volume(name, like, prediction.probabilities[index], prediction.masks[index])
            records.append(_sample_record(dataset, prediction, index))
        return records, written

    def _write_parents(self, dataset: Dataset, prediction: DatasetPrediction) -> tuple[list[dict[str, Any]], list[str]]:
        records, written = [], []
        for parent, volume, mask in self.predictor.parent_volumes(dataset, prediction):
            written += self._write_volume(parent, volume, volume.data, mask)
            records.append({"name": parent, "shape": list(mask.shape), "foreground_fraction": float(mask.mean())})
        return records, written


def _sample_record(dataset: Dataset, prediction: DatasetPrediction, index: int) -> dict[str, Any]:
    return {
        "name": dataset.names[index],
        "shape": list(dataset.box),
        "foreground_fraction": float(prediction.masks[index].mean()),
    }


def plan_prediction(
    predictor: Predictor, inputs: list[Path], output: Path, provenance: str = "", paste: Path | None = None
) -> PredictionJob:
    """Read and check every input (nothing is written); raise VoxudaInputError on the first problem."""
    if not inputs:
        raise VoxudaInputError("no input given; pass an HDF5 dataset, MRC files or a folder of MRC files")
    kind = output_kind(output)
    job = PredictionJob(predictor, output, kind, provenance=provenance, paste=paste)
    if kind == "copick":
        job.copick = parse_locator(output)
        job.copick.require("segmentation", "user", "session", what="writing segmentations")
    dataset_path = single_dataset(inputs)
    if dataset_path is not None:
        job.dataset = read_h5_dataset(dataset_path)
        predictor.check_dataset_box(job.dataset)
        predictor.input_voxel_size(job.dataset.voxel_size, job.dataset.source)
    else:
        _plan_mrc_inputs(job, inputs)
    _check_outputs(job)
    if paste is not None:
        _check_paste(job, paste)
    _check_polarity(job)
    return job


def _check_polarity(job: PredictionJob) -> None:
    """--polarity on boxes of every input as the model will see them; under auto, flip them all."""
    predictor = job.predictor
    boxes = [] if job.dataset is None else [job.dataset.images]
    for path, _ in job.tomograms:
        data = read_mrc(path, mmap=True, check=False).data
        boxes.append(sample_boxes(data, predictor.box, POLARITY_BOXES_PER_AXIS, interior=False))
    if not boxes:
        return
    sample = np.concatenate([b[:: max(1, len(b) // 128)] for b in boxes])
    names = ", ".join([*(["the dataset"] if job.dataset is not None else []), *(p.name for p, _ in job.tomograms)])
    if resolve_polarity(sample, predictor.settings.polarity, f"predict {names}", predictor.info.invert):
        predictor.info = dataclasses.replace(predictor.info, invert=not predictor.info.invert)
        # a flip negates the streamed means (normalise.VolumeStats): no second pass over the tomograms
        job.tomograms = [(path, scan.negated()) for path, scan in job.tomograms]


def _check_paste(job: PredictionJob, paste: Path) -> None:
    from voxuda_cli.inference.paste import check_pasteable

    if job.dataset is None:
        raise VoxudaInputError(f"--paste {paste}: needs a dataset made by voxuda extract as the input")
    if paste.exists() and not paste.is_dir():
        raise VoxudaInputError(f"--paste {paste}: exists and is not a folder; pass a folder")
    check_pasteable(job.dataset)


def _plan_mrc_inputs(job: PredictionJob, inputs: list[Path]) -> None:
    predictor = job.predictor
    subtomograms: list[Path] = []
    for path in _selected(job, expand_mrc_paths(inputs)):
        header = predictor.with_input_voxel_size(read_mrc(path, mmap=True, check=False), str(path))
        on_model_grid = header.shape
        if predictor.needs_resampling(header.voxel_size) and header.shape != predictor.box:
            on_model_grid = model_shape(header.shape, header.voxel_size, float(predictor.info.voxel_size))
        predictor.check_volume_shape(on_model_grid, str(path))
        job.headers[volume_name(path)] = _header_only(header)
        job.shapes[volume_name(path)] = on_model_grid
        if header.shape == predictor.box:
            subtomograms.append(path)
        else:
            predictor.plan(on_model_grid)  # --window / --margin refused here, before anything is written
            job.tomograms.append((path, predictor.scan(header.data, str(path), release=True)))
    if subtomograms:
        job.dataset = read_dataset(subtomograms)


def _selected(job: PredictionJob, paths: list[Path]) -> list[Path]:
    """The inputs of this run: its --shard, less those whose outputs exist with --skip-existing."""
    settings = job.predictor.settings
    chosen = [path for path in paths if in_shard(volume_name(path), settings.shard)]
    if settings.shard is not None:
        log.info("--shard %s: %d of %d inputs", settings.shard, len(chosen), len(paths))
    if settings.skip_existing and job.kind in ("folder", "copick"):
        done = [path for path in chosen if _outputs_exist(job, path)]
        if done:
            log.info("--skip-existing: %d input(s) already predicted (%s)", len(done), _names(done))
        chosen = [path for path in chosen if path not in done]
    return chosen


def _outputs_exist(job: PredictionJob, path: Path) -> bool:
    if job.copick is not None:
        from voxuda_cli.io.copick import segmentation_complete

        voxel_size = job.predictor.with_input_voxel_size(read_mrc(path, mmap=True, check=False), str(path))
        return segmentation_complete(job.copick, volume_name(path), voxel_size.isotropic_voxel_size)
    mask = job.output / f"{volume_name(path)}.mrc"
    return mask.exists() and (not job.predictor.settings.probabilities or probabilities_path(mask).exists())


def _names(paths: list[Path]) -> str:
    return ", ".join(volume_name(p) for p in paths[:3]) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")


def _header_only(volume: Volume) -> Volume:
    return Volume(np.empty((0, 0, 0), np.float32), volume.voxel_size, volume.origin, list(volume.labels))


def _check_outputs(job: PredictionJob) -> None:
    if job.tomograms and job.predictor.settings.smooth > 0:
        raise VoxudaInputError(
            f"--smooth {job.predictor.settings.smooth}: {job.tomograms[0][0].name} is a whole tomogram; --smooth keeps "
            "one particle's expected volume per box, so it is for subtomograms (extract them at picks first)"
        )
    if job.kind == "h5":
        if job.tomograms:
            names = ", ".join(p.name for p, _ in job.tomograms[:3])
            raise VoxudaInputError(
                f"{job.output}: {names} larger than the model box {job.predictor.box} is predicted whole into an "
                "MRC file; pass a folder (or an .mrc path) to -o"
            )
        return
    count = len(job.tomograms)
    if job.dataset is not None:
        parents = set(job.dataset.parents or []) if job.dataset.is_patchified else None
        count += len(parents) if parents is not None else len(job.dataset)
    if job.kind == "copick":
        _check_copick_output(job)
    if job.kind == "zarr" and (job.dataset is not None or count != 1):
        raise VoxudaInputError(f"{job.output}: an OME-Zarr output holds one whole tomogram; pass one, or -o a folder")
    if job.kind == "mrc" and count != 1:
        raise VoxudaInputError(
            f"{job.output}: one MRC file cannot hold {count} output volumes; pass a folder or an .h5 path to -o"
        )


def _check_copick_output(job: PredictionJob) -> None:
    from voxuda_cli.io.copick import check_output

    if job.dataset is not None:
        raise VoxudaInputError(f"{job.output}: copick segmentations are of whole tomograms; pass tomograms")
    if job.predictor.settings.probabilities:
        raise VoxudaInputError(f"{job.output}: copick holds label images; write --probabilities to a folder (-o)")
    assert job.copick is not None
    check_output(job.copick, "segmentation", [volume_name(path) for path, _ in job.tomograms])


def describe_inputs(job: PredictionJob) -> str:
    """One line on what a job will do (for logs)."""
    parts = []
    if job.dataset is not None:
        what = "patches" if job.dataset.is_patchified else "samples"
        parts.append(f"{len(job.dataset)} {what} of {job.dataset.box}")
    if job.tomograms:
        settings = job.predictor.settings
        how = (
            f"box windows blended (overlap {settings.overlap})"
            if settings.blend == "gaussian"
            else f"large windows (margin {settings.margin}, {settings.window or f'--memory {settings.memory} GiB'})"
        )
        parts.append(f"{len(job.tomograms)} whole volume(s) by {how}")
    return ", ".join(parts) + f" -> {job.output}"
