"""PredictSettings and PseudoLabelSettings: every setting of `predict` and `pseudo-label`, defaults in one place."""

from __future__ import annotations

from dataclasses import dataclass

from voxuda_cli.errors import VoxudaInputError
from voxuda_cli.filters.denoisers import check_denoiser

WEIGHT_CHOICES = ("teacher", "student")
NORMALISE_CHOICES = ("window", "tomogram")
DEFAULT_ETA = 0.85  # METHOD.md; used when a model file does not record its own


def _check_device(device: str) -> None:
    if device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:"):
        raise VoxudaInputError(f"--device {device}: unknown device; use one of auto, cpu, cuda")


def _check_use(use: str) -> None:
    if use not in WEIGHT_CHOICES:
        raise VoxudaInputError(f"--use {use}: unknown weights; use teacher or student")


def _check_batch_size(batch_size: int) -> None:
    if int(batch_size) < 1:
        raise VoxudaInputError(f"--batch-size {batch_size}: must be at least 1")


@dataclass
class PredictSettings:
    """Settings of ``voxuda predict`` and of :class:`voxuda_cli.inference.Predictor`."""

    threshold: float = 0.5  # foreground where its probability is above this
    overlap: float = 0.5  # fraction of the window shared by neighbouring windows (whole tomograms)
    batch_size: int = 4  # windows per forward pass; on a CPU more does not run faster, it only costs memory
    tta: bool = False  # average the 8 flips of every window (8x the compute)
    min_size: int = 0  # remove connected foreground components smaller than this many voxels
    probabilities: bool = False  # also write the foreground probability
    normalise: str = "window"  # whole tomograms: z-score each window (like training) or the whole tomogram once
    device: str = "auto"
    amp: bool = False  # mixed precision on CUDA (ignored on CPU)
    # The student or the teacher (EMA) weights of the model file. Student: on the project's benchmark
    # (benchmarks/results.md) the student segmented the held-out target better than the teacher in
    # every Vox-UDA run; the teacher's job is the pseudo-labels (pseudo-label's default).
    use: str = "student"

    def __post_init__(self) -> None:
        if not 0.0 <= float(self.threshold) < 1.0:
            raise VoxudaInputError(f"--threshold {self.threshold}: must be in [0, 1)")
        if not 0.0 <= float(self.overlap) < 1.0:
            raise VoxudaInputError(f"--overlap {self.overlap}: must be in [0, 1)")
        if int(self.min_size) < 0:
            raise VoxudaInputError(f"--min-size {self.min_size}: must be 0 (off) or a number of voxels")
        if self.normalise not in NORMALISE_CHOICES:
            raise VoxudaInputError(f"--normalise {self.normalise}: use one of {', '.join(NORMALISE_CHOICES)}")
        _check_batch_size(self.batch_size)
        _check_device(self.device)
        _check_use(self.use)


@dataclass
class PseudoLabelSettings:
    """Settings of ``voxuda pseudo-label``. ``None`` means: what the model file recorded from training."""

    eta: float | None = None  # confidence threshold; model file's, else 0.85
    denoiser: str | None = None  # the teacher's input filter; model file's (ibf by default)
    sigma_d: float | None = None  # (I)BF spatial sigma; model file's, else the filter's default
    sigma_r: float | None = None  # (I)BF range sigma; model file's, else the filter's default
    keep_rate: float | None = None  # NGM high-pass fraction; model file's, else the filter's default
    use: str = "teacher"
    batch_size: int = 16  # samples per forward pass
    device: str = "auto"
    amp: bool = False

    def __post_init__(self) -> None:
        if self.eta is not None and not 0.5 <= float(self.eta) <= 1.0:
            raise VoxudaInputError(f"--eta {self.eta}: must be in [0.5, 1] (a class probability)")
        if self.denoiser is not None:
            check_denoiser(self.denoiser)
        _check_batch_size(self.batch_size)
        _check_device(self.device)
        _check_use(self.use)
