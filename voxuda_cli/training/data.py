"""Training data: read and check the datasets, normalise them, and build seeded batches.

Everything lives in memory (subtomograms are small). Each batch is built from its own random
stream, derived from (seed, epoch, step, rank), so the batches of an epoch do not depend on how
many loader workers build them, nor on whether the run was interrupted and resumed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from voxuda_cli.errors import VoxudaInputError
from voxuda_cli.io.dataset import Dataset
from voxuda_cli.normalise import zscore
from voxuda_cli.polarity import resolve_polarity
from voxuda_cli.training.settings import TrainSettings

log = logging.getLogger("voxuda")

NETWORK_DOWNSAMPLING = 8  # three stride-2 stages
VOXEL_SIZE_TOLERANCE = 0.05  # relative difference of target and source voxel size that is only warned about
DENOISE_CHUNK = 256  # volumes per denoise call: bounds the filter's temporary memory
# --source-view auto: the spectral view where less than this fraction of the target's radial power
# spectra lies in the source's 5-95 % range (filters/spectral.spectral_coverage). Measured
# (benchmarks/results.md): the paper's source covers 0.06 of the hard target and 0.35 of the easy one,
# where the view carries the adaptation; the randomised source 0.86 and 0.92, where it costs Dice.
SPECTRAL_COVERAGE_THRESHOLD = 0.5


def source_spans_target(coverage: float) -> bool:
    """The rule both autos decide on: the source's spectra already span the target's."""
    return coverage >= SPECTRAL_COVERAGE_THRESHOLD


@dataclass
class VolumeSet:
    """Images (N, D, H, W) z-scored, masks (N, D, H, W) uint8 or None (the target), names; on the CPU."""

    images: torch.Tensor
    masks: torch.Tensor | None
    names: list[str]
    classes: list[str] | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])


@dataclass
class TrainingData:
    """What the loop trains on, checked and normalised."""

    labelled: VolumeSet  # the source (the target itself for --method supervised)
    target: VolumeSet | None  # unlabelled target images (methods with uses_target)
    denoised_target: torch.Tensor | None  # the teacher's input, computed once per run (uses_denoised_target)
    validation: VolumeSet | None
    box: tuple[int, int, int]
    voxel_size: float
    noise_sigma: float | None  # NGM sigma_t (uses_noisy_source)
    warnings: list[str]
    source_view: str = "none"  # the second source view, --source-view auto resolved (resolve_source_view)
    spectral_coverage: float | None = None  # what auto decided on
    invert: bool = False  # the contrast flip of the target (else the labelled set): what predict applies
    bn_statistics: str = "mixed"  # --bn-statistics, auto resolved (resolve_bn_statistics)


def check_box(box: Sequence[int], where: str) -> None:
    if any(int(edge) % NETWORK_DOWNSAMPLING for edge in box):
        raise VoxudaInputError(
            f"{where}: box {tuple(box)} is not a multiple of {NETWORK_DOWNSAMPLING} along every axis "
            f"(the network halves the grid three times); patchify, crop or resize to e.g. 32^3"
        )


def _read(paths: Sequence[Path], option: str) -> Dataset:
    from voxuda_cli.io.sources import read_dataset

    if not paths:
        raise VoxudaInputError(f"{option}: no dataset given; pass an HDF5 dataset, MRC files or a folder")
    dataset = read_dataset(list(paths))
    _refuse_lost_voxel_size(dataset, option)
    return dataset


def _read_beside(paths: Sequence[Path], option: str, labelled: Dataset) -> Dataset:
    """A dataset read to go with the labelled one: its box must be the same."""
    dataset = _read(paths, option)
    if dataset.box != labelled.box:
        raise VoxudaInputError(
            f"{option} {dataset.source}: box {dataset.box} differs from the labelled set's {labelled.box}; "
            "patchify both to one box"
        )
    return dataset


def _refuse_lost_voxel_size(dataset: Dataset, option: str) -> None:
    """A model records its voxel size (predict resamples by it): a lost one (0 or 1.0 A) is refused."""
    from voxuda_cli.io.volume import checked_voxel_size

    try:
        checked_voxel_size(dataset.voxel_size, None, option)
    except VoxudaInputError:
        raise VoxudaInputError(
            f"{option} {dataset.source}: voxel size {dataset.voxel_size:g} A is what tools write when they lose it; "
            "re-make the dataset with the real one (voxuda extract, patchify or ibf-denoise --input-voxel-size A)"
        ) from None


def _as_set(dataset: Dataset, invert: bool, with_masks: bool) -> VolumeSet:
    images = torch.from_numpy(zscore(dataset.images, invert))
    masks = None
    if with_masks and dataset.masks is not None:
        masks = torch.from_numpy(np.ascontiguousarray(dataset.masks, dtype=np.uint8))
    return VolumeSet(images=images, masks=masks, names=list(dataset.names), classes=dataset.classes)


def _check_voxel_size(reference: Dataset, other: Dataset, option: str, strict: bool) -> str | None:
    ratio = other.voxel_size / reference.voxel_size
    if abs(ratio - 1.0) <= VOXEL_SIZE_TOLERANCE:
        return None
    message = (
        f"{option} {other.source}: voxel size {other.voxel_size:.3f} A differs from the source's "
        f"{reference.voxel_size:.3f} A by {abs(ratio - 1) * 100:.0f} %; the network sees structures at a "
        "different scale (resample with voxuda patchify --resize)"
    )
    if strict:
        raise VoxudaInputError(message + "; refused because of --strict")
    return message


def match_target_voxel_size(reference: Dataset, target: Dataset, strict: bool) -> tuple[Dataset, str | None]:
    """The target on the source's voxel size: Fourier-resampled when they differ by > 1 % (``--strict`` refuses).

    Each box is resampled (``resample``) and fitted back to the box by a centre crop or edge
    padding (``resample.fit_to_box``), so the network sees target structures at the
    scale of the source's. Both voxel sizes were checked when read (a lost one is refused).
    """
    from voxuda_cli.resample import differs, fit_to_box

    if not differs(target.voxel_size, reference.voxel_size):
        return target, None
    message = (
        f"--tgt {target.source}: voxel size {target.voxel_size:.3f} A differs from the source's "
        f"{reference.voxel_size:.3f} A by {abs(target.voxel_size / reference.voxel_size - 1) * 100:.0f} %"
    )
    if strict:
        raise VoxudaInputError(message + "; refused because of --strict")
    images, _ = fit_to_box(target.images, target.voxel_size, reference.voxel_size, target.box)
    resampled = Dataset(
        images=images, names=list(target.names), voxel_size=reference.voxel_size, kind=target.kind, source=target.source
    )
    return resampled, message + "; resampled to the source's voxel size (Fourier, box kept)"


def load_training_data(settings: TrainSettings, device: torch.device | None = None) -> TrainingData:
    """Read, check and normalise the datasets the method needs; denoise the target once; get sigma_t."""
    from voxuda_cli.training.methods import get_method

    method = get_method(settings.method)(settings)
    warnings: list[str] = []
    labelled_ds = _read_labelled(settings, method.labelled_option)
    target_ds = None
    if method.uses_target:
        target_ds = _read_beside(settings.tgt, "--tgt", labelled_ds)
        target_ds, warning = match_target_voxel_size(labelled_ds, target_ds, settings.strict)
        warnings.append(warning or "")
    elif method.labelled_option == "--src" and settings.tgt:
        log.info("--method %s does not use --tgt", method.name)
    validation = None
    if settings.val:
        val_ds = _read_beside(settings.val, "--val", labelled_ds)
        warnings.append(_check_voxel_size(labelled_ds, val_ds, "--val", settings.strict) or "")
        if val_ds.masks is None:
            log.info("--val %s has no /masks: no validation Dice/IoU", val_ds.source)
        validation = _as_set(val_ds, _flips(settings, val_ds, "--val"), with_masks=True)
    target, target_invert = None, None
    if target_ds is not None:
        target_invert = _flips(settings, target_ds, "--tgt")
        target = _as_set(target_ds, target_invert, with_masks=False)
    noise_sigma = denoised = None
    if target is not None and method.uses_noisy_source:
        noise_sigma = target_noise_sigma(settings, target)
    if target is not None and method.uses_denoised_target:
        denoised = denoise_target(settings, target.images, device)
    labelled_invert = _flips(settings, labelled_ds, method.labelled_option)
    labelled = _as_set(labelled_ds, labelled_invert, with_masks=True)
    source_view, coverage = resolve_source_view(settings, labelled, target if method.uses_noisy_source else None)
    bn_statistics = resolve_bn_statistics(settings, coverage)
    return TrainingData(
        labelled=labelled,
        target=target,
        denoised_target=denoised,
        validation=validation,
        box=labelled_ds.box,
        voxel_size=float(labelled_ds.voxel_size),
        noise_sigma=noise_sigma,
        warnings=[w for w in warnings if w],
        source_view=source_view,
        spectral_coverage=coverage,
        bn_statistics=bn_statistics,
        # what predict applies to its inputs: the target's flip where there is a target
        invert=labelled_invert if target_invert is None else target_invert,
    )


def _flips(settings: TrainSettings, dataset: Dataset, option: str) -> bool:
    """Whether ``dataset`` is contrast-flipped: --invert, then --polarity (polarity.py) on the result."""
    # --invert flips every training set, a simulated source too: per-set flips are --polarity auto's
    remedy = "pass --polarity auto (it flips each set that looks dark; --invert flips every set)"
    flipped = resolve_polarity(dataset.images, settings.polarity, f"{option} {dataset.source}", settings.invert, remedy)
    return settings.invert != flipped


def resolve_bn_statistics(settings: TrainSettings, coverage: float | None) -> str:
    """--bn-statistics with auto decided on the spectral coverage --source-view auto measured.

    Where the source spans the target's spectra, a source-only network's normalisation already
    fits the target; measured on the randomized source, putting the target into the batch
    statistics cost 2.4 Dice on the easy target with no adaptation loss at all (results.md).
    Where it does not (the paper's narrow source), the target's share of the statistics is part
    of what adapts, so auto keeps them mixed.
    """
    choice = str(settings.bn_statistics)
    if choice != "auto":
        return choice
    return "source" if coverage is not None and source_spans_target(coverage) else "mixed"


def resolve_source_view(
    settings: TrainSettings, source: VolumeSet, target: VolumeSet | None
) -> tuple[str, float | None]:
    """(--source-view with auto decided, the spectral coverage auto decisions are made on).

    The spectral view imports the target's amplitude spectrum into the source. Where the source's
    spectra already span the target's, it only distorts the source: auto keeps x_s' = x_s there.
    The coverage is measured where --source-view or --bn-statistics is auto.
    """
    view = str(settings.source_view)
    if target is None or "auto" not in (view, settings.bn_statistics):
        return ("none" if view == "auto" else view), None
    from voxuda_cli.filters.spectral import spectral_coverage

    coverage = spectral_coverage(source.images, target.images)
    if view != "auto":
        return view, coverage
    view = "none" if source_spans_target(coverage) else "spectral"
    log.info(
        "--source-view auto: %.0f %% of the target's power spectra lie in the source's 5-95 %% range: %s",
        100 * coverage,
        "the spectral view" if view == "spectral" else "the source spans the target's spectra, no second view",
    )
    return view, coverage


def _read_labelled(settings: TrainSettings, option: str) -> Dataset:
    """The labelled set: the source (--src), or for methods trained on the target itself --tgt with masks."""
    if option == "--tgt":
        dataset = _read(settings.tgt, "--tgt")
        if dataset.masks is None:
            raise VoxudaInputError(
                f"--tgt {dataset.source}: no /masks; --method {settings.method} trains on labelled target data"
            )
        if settings.src:
            log.info("--method %s trains on --tgt with its masks; --src is not used", settings.method)
    else:
        dataset = _read(settings.src, "--src")
        if dataset.masks is None:
            raise VoxudaInputError(
                f"--src {dataset.source}: no /masks; the source must be labelled "
                "(an HDF5 dataset with /masks, e.g. from voxuda simulate-prep)"
            )
    check_box(dataset.box, f"{option} {dataset.source}")
    return dataset


def target_noise_sigma(settings: TrainSettings, target: VolumeSet) -> float:
    """sigma_t of the NGM: from ``--noise`` (a saved estimate) or estimated on the z-scored target."""
    from voxuda_cli.filters.noise import NoiseEstimate, NoiseSettings, estimate_noise

    if settings.noise is not None:
        if not settings.noise.is_file():
            raise VoxudaInputError(f"--noise {settings.noise}: file not found; run voxuda estimate-noise first")
        estimate = NoiseEstimate.load(settings.noise)
        if abs(estimate.keep_rate - settings.keep_rate) > 1e-9:
            log.info(
                "--noise %s was estimated with keep rate %.3f (this run: %.3f)",
                settings.noise,
                estimate.keep_rate,
                settings.keep_rate,
            )
        return float(estimate.sigma)
    n_sampled = min(settings.n_sampled, len(target))
    noise_settings = NoiseSettings(n_sampled=n_sampled, keep_rate=settings.keep_rate, seed=settings.seed)
    estimate = estimate_noise(target.images.numpy(), target.names, noise_settings)
    log.info("NGM: sigma_t = %.4f from %d target volumes", estimate.sigma, n_sampled)
    return float(estimate.sigma)


def denoise_target(settings: TrainSettings, images: torch.Tensor, device: torch.device | None = None) -> torch.Tensor:
    """The teacher's input: the whole target denoised once (in chunks, on ``device``), kept on the CPU."""
    from voxuda_cli.filters.denoisers import DenoiserParams, make_denoiser

    denoiser = make_denoiser(settings.denoiser, DenoiserParams(settings.sigma_d, settings.sigma_r, settings.keep_rate))
    if denoiser.identity:
        return images  # no copy of the whole target
    parts = []
    for start in range(0, images.shape[0], DENOISE_CHUNK):
        chunk = images[start : start + DENOISE_CHUNK]
        if device is not None:
            chunk = chunk.to(device)
        filtered = denoiser(chunk)
        parts.append(filtered.float().cpu())
    return torch.cat(parts).contiguous()


def derived_seed(*parts: int) -> int:
    """A 63-bit seed for one random stream, from (seed, stream, epoch, step, rank, ...)."""
    state = np.random.SeedSequence([int(p) for p in parts]).generate_state(1, dtype=np.uint64)
    return int(state[0] >> np.uint64(1))


STREAM_ORDER, STREAM_BATCH = 1, 2


@dataclass(frozen=True)
class EpochPlan:
    """Which labelled samples each step of one epoch of one process takes.

    All processes draw the same permutation (seed, epoch); process ``rank`` takes every
    ``world``-th entry of it, the permutation padded by wrapping so every process runs the same
    number of steps (as torch's DistributedSampler does).
    """

    order: tuple[int, ...]  # this process's labelled indices, in order
    batch_size: int  # per process

    @classmethod
    def build(cls, n_labelled: int, batch_size: int, seed: int, epoch: int, rank: int = 0, world: int = 1) -> EpochPlan:
        generator = torch.Generator().manual_seed(derived_seed(seed, STREAM_ORDER, epoch))
        permutation = torch.randperm(n_labelled, generator=generator).tolist()
        per_rank = -(-n_labelled // world)
        padded = (permutation * (-(-per_rank * world // n_labelled)))[: per_rank * world]
        return cls(order=tuple(padded[rank::world]), batch_size=batch_size)

    @property
    def steps(self) -> int:
        return -(-len(self.order) // self.batch_size)

    def indices(self, step: int) -> list[int]:
        return list(self.order[step * self.batch_size : (step + 1) * self.batch_size])


class Batch(NamedTuple):
    images: torch.Tensor  # (B, 1, D, H, W) labelled images (augmented)
    masks: torch.Tensor  # (B, D, H, W) uint8
    noisy: torch.Tensor | None  # (B, 1, D, H, W) x_s', the second source view (vox-uda; None: x_s' = x_s)
    target: torch.Tensor | None  # (B, 1, D, H, W) target images (vox-uda, dann)
    denoised: torch.Tensor | None  # (B, 1, D, H, W) the same target samples, denoised (vox-uda)
    # the student's batch norm takes its statistics from the source views alone (--bn-statistics)
    source_statistics: bool = False

    @property
    def target_volumes(self) -> torch.Tensor:
        """``target``, which the loop builds for every method with ``uses_target``."""
        assert self.target is not None, "the method did not say uses_target"
        return self.target

    @property
    def denoised_volumes(self) -> torch.Tensor:
        """``denoised``, which the loop builds for every method with ``uses_denoised_target``."""
        assert self.denoised is not None, "the method did not say uses_denoised_target"
        return self.denoised

    def to(self, device: torch.device, non_blocking: bool = False) -> Batch:
        fields = self._asdict().items()
        moved: dict[str, Any] = {k: v.to(device, non_blocking=non_blocking) for k, v in fields if torch.is_tensor(v)}
        return self._replace(**moved)


def random_flips(
    images: torch.Tensor, masks: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Flip each sample along each spatial axis with probability 1/2 (image and mask alike).

    Flips only, no 90-degree rotations: a rotation that moves z would turn the missing wedge
    (along z in every tomogram) into an orientation real data never has.
    """
    choices = torch.rand((images.shape[0], 3), generator=generator) < 0.5
    flipped_images, flipped_masks = [], []
    for index in range(images.shape[0]):
        axes = [axis for axis, flip in zip((-3, -2, -1), choices[index].tolist()) if flip]
        flipped_images.append(images[index].flip(axes) if axes else images[index])
        flipped_masks.append(masks[index].flip(axes) if axes else masks[index])
    return torch.stack(flipped_images), torch.stack(flipped_masks)


class EpochBatches(torch.utils.data.Dataset):
    """Batch ``step`` of one epoch, built from its own random stream (so workers change nothing)."""

    def __init__(
        self,
        data: TrainingData,
        settings: TrainSettings,
        plan: EpochPlan,
        epoch: int,
        rank: int = 0,
    ) -> None:
        self.data = data
        self.settings = settings
        self.plan = plan
        self.epoch = epoch
        self.rank = rank

    def __len__(self) -> int:
        return self.plan.steps

    def __getitem__(self, step: int) -> Batch:
        from voxuda_cli.filters.noise import add_ngm_noise
        from voxuda_cli.filters.spectral import mix_amplitudes

        generator = torch.Generator().manual_seed(
            derived_seed(self.settings.seed, STREAM_BATCH, self.epoch, step, self.rank)
        )
        indices = torch.tensor(self.plan.indices(step))
        labelled = self.data.labelled
        images = labelled.images[indices]
        masks = labelled.masks[indices]  # type: ignore[index]  # labelled sets always have masks (checked when read)
        if self.settings.augment:
            images, masks = random_flips(images, masks, generator)
        images = images.unsqueeze(1).contiguous()
        noisy = target = denoised = None
        view = self.data.source_view if self.settings.source_view == "auto" else self.settings.source_view
        if self.data.noise_sigma is not None and view in ("ngm", "both"):
            noisy = add_ngm_noise(images, self.settings.ngm_scale * self.data.noise_sigma, generator=generator)
        if self.data.target is not None:
            # The target is sampled with replacement: it may be larger or smaller than the source.
            picks = torch.randint(len(self.data.target), (len(indices),), generator=generator)
            target = self.data.target.images[picks].unsqueeze(1).contiguous()
            if self.data.denoised_target is not None:
                denoised = self.data.denoised_target[picks].unsqueeze(1).contiguous()
            if self.data.noise_sigma is not None and view in ("spectral", "both"):
                # x_s' styled after the batch's target volumes (after the NGM's noise, for "both")
                strength = torch.rand(len(indices), generator=generator) * float(self.settings.spectral_strength or 0.0)
                noisy = mix_amplitudes(images if noisy is None else noisy, target, strength)
        source_statistics = target is not None and self.data.bn_statistics == "source"
        return Batch(images, masks.contiguous(), noisy, target, denoised, source_statistics)
