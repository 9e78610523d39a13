"""PredictSettings and PseudoLabelSettings: every setting of `predict` and `pseudo-label`, defaults in one place."""

from __future__ import annotations

from dataclasses import dataclass

from voxuda_cli import fields
from voxuda_cli.device import check_device
from voxuda_cli.errors import VoxudaInputError
from voxuda_cli.fields import DEFAULT_ETA, FROM_MODEL, WEIGHT_CHOICES, setting
from voxuda_cli.filters.denoisers import check_denoiser
from voxuda_cli.filters.denoisers import names as denoiser_names
from voxuda_cli.inference.smoothing import check_smooth
from voxuda_cli.io.sources import parse_shard

NORMALISE_CHOICES = ("local", "tomogram", "window")
BLEND_CHOICES = ("core", "gaussian")
__all__ = ["DEFAULT_ETA", "NORMALISE_CHOICES", "PredictSettings", "PseudoLabelSettings"]


def _check_use(use: str) -> None:
    if use not in WEIGHT_CHOICES:
        raise VoxudaInputError(f"--use {use}: unknown weights; use one of {', '.join(WEIGHT_CHOICES)}")


def _check_batch_size(batch_size: int) -> None:
    if int(batch_size) < 1:
        raise VoxudaInputError(f"--batch-size {batch_size}: must be at least 1")


@dataclass
class PredictSettings:
    """Settings of ``voxuda predict`` and of :class:`voxuda_cli.inference.Predictor`."""

    threshold: float = setting(0.5, "Foreground where its probability is above this.")
    # Whole tomograms (plan.py, docs/METHOD.md "Whole tomograms"): large windows whose cores tile the
    # grid, each voxel computed once with at least --margin voxels of context.
    window: int = setting(
        0, "Whole tomograms: window edge (voxels, rounded to a multiple of 8). 0: the largest that fits --memory."
    )
    margin: int = setting(
        16, "Whole tomograms: context voxels around each window's kept core (docs/METHOD.md, Whole tomograms)."
    )
    memory: float = setting(
        0.5, "Whole tomograms: GiB of working memory (RAM, or GPU memory on CUDA) a forward may take; sizes --window 0."
    )
    blend: str = setting(
        "core",
        "Whole tomograms: keep each large window's core (core) or blend box-sized windows overlapping by --overlap "
        "with Gaussian weights (gaussian, MONAI's way): {choices}.",
        choices=lambda: BLEND_CHOICES,
    )
    overlap: float = setting(0.5, "With --blend gaussian: fraction of the box shared by neighbouring windows.")
    batch_size: int = fields.batch_size(4, "windows per forward pass (large windows: at most what --memory holds)")
    tta: bool = setting(False, "Average the 8 flips of every window (8x slower).")
    min_size: int = setting(0, "Remove connected foreground components smaller than this (voxels).")
    smooth: float = setting(
        0.0,
        "Subtomograms and stitched patches: blur the probabilities by a Gaussian of this sigma (A), then keep "
        "their expected volume (for masks of picked particles; docs/METHOD.md). 0: off.",
    )
    probabilities: bool = setting(False, "Also write foreground probabilities (_probabilities.mrc).")
    normalise: str = setting(
        "local",
        "Whole tomograms: z-score with the mean and std of blocks of twice the model box, interpolated across the "
        "tomogram (local: follows uneven ice), with the whole tomogram's, or each window's: {choices}.",
        choices=lambda: NORMALISE_CHOICES,
    )  # fmt: skip
    device: str = fields.device()
    amp: bool = fields.amp()
    int8: bool = setting(
        False,
        "CPU: 8-bit convolutions (oneDNN; several times float32's speed on CPUs with VNNI or AMX-INT8), scaled "
        "from a pass over samples of each input; moves probabilities by about 1e-2 (docs/METHOD.md).",
    )
    compile: bool = fields.compile_network()
    # Student: on the project's benchmark (benchmarks/results.md) the student segmented the held-out
    # target at least as well as the teacher in every Vox-UDA run with pseudo-labels (re-measured
    # with the default recipe: 12 runs, both targets); the teacher's job is the pseudo-labels.
    use: str = fields.use("student")
    input_voxel_size: float | None = fields.input_voxel_size()
    polarity: str = fields.polarity("the inputs (after the model's --invert)")
    shard: str | None = fields.shard()
    skip_existing: bool = fields.skip_existing()

    def __post_init__(self) -> None:
        fields.check_polarity(self.polarity)
        if self.shard is not None:
            parse_shard(self.shard)
        if not 0.0 <= float(self.threshold) < 1.0:
            raise VoxudaInputError(f"--threshold {self.threshold}: must be in [0, 1)")
        if not 0.0 <= float(self.overlap) < 1.0:
            raise VoxudaInputError(f"--overlap {self.overlap}: must be in [0, 1)")
        if int(self.min_size) < 0:
            raise VoxudaInputError(f"--min-size {self.min_size}: must be 0 (off) or a number of voxels")
        if self.blend not in BLEND_CHOICES:
            raise VoxudaInputError(f"--blend {self.blend}: use one of {', '.join(BLEND_CHOICES)}")
        if int(self.window) < 0 or int(self.margin) < 0 or not float(self.memory) > 0:
            raise VoxudaInputError(
                f"--window {self.window} --margin {self.margin} --memory {self.memory}: window and margin must be "
                "0 or more voxels and memory a positive number of GiB"
            )
        if self.normalise not in NORMALISE_CHOICES:
            raise VoxudaInputError(f"--normalise {self.normalise}: use one of {', '.join(NORMALISE_CHOICES)}")
        if self.int8 and (self.amp or self.compile):
            raise VoxudaInputError("--int8 with --amp or --compile: choose one way to run the network")
        check_smooth(self.smooth)
        _check_batch_size(self.batch_size)
        check_device(self.device)
        _check_use(self.use)


@dataclass
class PseudoLabelSettings:
    """Settings of ``voxuda pseudo-label``. ``None`` means: what the model file recorded from training."""

    eta: float | None = fields.eta(None, default_help=f"[default: the model file's eta, else {DEFAULT_ETA}]")
    pl_threshold: str | None = fields.pl_threshold(None, default_help="[default: the model file's, else global]")
    pl_keep: float | None = fields.pl_keep(None, default_help="[default: the model file's, else 0.5]")
    denoiser: str | None = fields.denoiser(None, default_help="[default: the model file's]", choices=denoiser_names)
    sigma_d: float | None = fields.sigma_d(None, default_help=FROM_MODEL)
    sigma_r: float | None = fields.sigma_r(None, default_help=FROM_MODEL)
    keep_rate: float | None = fields.keep_rate(None, default_help=FROM_MODEL)
    use: str = fields.use("teacher")
    batch_size: int = fields.batch_size(16, "samples per forward pass")
    input_voxel_size: float | None = fields.input_voxel_size()
    device: str = fields.device()
    amp: bool = fields.amp()

    def __post_init__(self) -> None:
        if self.eta is not None and not 0.5 <= float(self.eta) <= 1.0:
            raise VoxudaInputError(f"--eta {self.eta}: must be in [0.5, 1] (a class probability)")
        fields.check_pl_selection(self.pl_threshold, self.pl_keep)
        if self.denoiser is not None:
            check_denoiser(self.denoiser)
        _check_batch_size(self.batch_size)
        check_device(self.device)
        _check_use(self.use)
