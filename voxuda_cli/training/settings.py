"""TrainSettings: every setting of ``voxuda train`` and its default (the paper's), in one place."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voxuda_cli.errors import VoxudaInputError
from voxuda_cli.filters.denoisers import check_denoiser
from voxuda_cli.training.methods import get_method

DEVICES = ("auto", "cpu", "cuda")

# What may change between a run and its --resume (the hardware it runs on, and how long); the rest must match.
RESUMABLE_CHANGES = ("epochs", "device", "amp", "threads", "workers")


@dataclass
class TrainSettings:
    """Settings of ``voxuda train`` (the one source of their defaults; METHOD.md "Training")."""

    src: tuple[Path, ...] = ()  # labelled source dataset (HDF5, MRC files or folders)
    tgt: tuple[Path, ...] = ()  # unlabelled target dataset (labelled for --method supervised)
    val: tuple[Path, ...] = ()  # optional validation dataset; Dice/IoU per epoch when it has masks
    method: str = "vox-uda"
    denoiser: str = "ibf"  # pseudo-label denoiser of the teacher's input
    sigma_d: float = 120.0  # (I)BF spatial sigma (voxels)
    sigma_r: float = 1.2  # (I)BF range sigma (z-scored intensity units)
    keep_rate: float = 0.244  # NGM: fraction of highest-frequency Fourier coefficients kept
    n_sampled: int = 10  # NGM: target volumes sampled to estimate sigma_t
    noise: Path | None = None  # a saved `voxuda estimate-noise` result instead of estimating here
    epochs: int = 300
    batch_size: int = 16  # global batch: split over the processes of a torchrun launch
    lr: float = 1e-3  # Adam
    lr_step: int = 100  # epochs between learning-rate decays
    lr_gamma: float = 0.1  # decay factor
    width: int = 32  # VoxResNet C
    eta: float = 0.85  # pseudo-label confidence threshold
    ema: float = 0.99  # teacher decay
    seg_weight: float = 1.0
    con_weight: float = 1.0
    dis_weight: float = 1.0
    pl_weight: float = 1.0
    con_lambdas: tuple[float, float, float, float] = (0.2, 0.2, 0.3, 0.3)  # f_c, f_v2, f_v4, f_v6
    ramp_epochs: int | None = None  # horizon of the DANN reversal ramp; None: --epochs of the run's start
    # Epochs over which the L_pl weight ramps up as Mean Teacher's exp(-5 (1 - t)^2); 0 = full weight
    # from the first step (METHOD.md). A young teacher labels nearly every target voxel confident
    # background; the ramp keeps those labels from locking the student into predicting nothing.
    pl_warmup: float = 0.0
    augment: bool = True  # random flips of the labelled volumes (no rotations: data.random_flips says why)
    invert: bool = False  # flip contrast of raw data whose protein is dark (before z-scoring)
    strict: bool = False  # refuse (instead of warn) a target voxel size > 5 % off the source's
    seed: int = 0
    device: str = "auto"
    amp: bool = False  # mixed precision on CUDA (bf16 where supported, else fp16)
    threads: int | None = None  # torch CPU threads; None: torch's default
    workers: int = 0  # data-loading processes; data is in memory, so 0 is usually fastest

    def __post_init__(self) -> None:
        for name in ("src", "tgt", "val"):
            value = getattr(self, name)
            if isinstance(value, (str, Path)):
                value = (value,)
            # Absolute, so a --resume from another folder compares (and config.toml records) the same paths.
            setattr(self, name, tuple(Path(v).absolute() for v in value))
        if self.noise is not None:
            self.noise = Path(self.noise).absolute()
        self.con_lambdas = tuple(float(v) for v in self.con_lambdas)  # type: ignore[assignment]
        self._check()

    def _check(self) -> None:
        def bad(option: str, problem: str) -> VoxudaInputError:
            return VoxudaInputError(f"--{option.replace('_', '-')} {getattr(self, option)}: {problem}")

        get_method(self.method)
        check_denoiser(self.denoiser)
        if self.device not in DEVICES and not self.device.startswith("cuda:"):
            raise bad("device", f"unknown device; use one of {', '.join(DEVICES)}")
        for name in ("epochs", "batch_size", "lr_step", "width", "n_sampled"):
            if int(getattr(self, name)) < 1:
                raise bad(name, "must be at least 1")
        if self.pl_warmup < 0:
            raise bad("pl_warmup", "must be 0 (off) or a positive number of epochs")
        if self.ramp_epochs is not None and self.ramp_epochs < 1:
            raise bad("ramp_epochs", "must be at least 1")
        if not self.lr > 0:
            raise bad("lr", "must be positive")
        if not 0 < self.lr_gamma <= 1:
            raise bad("lr_gamma", "must be in (0, 1]")
        if not 0 < self.keep_rate < 1:
            raise bad("keep_rate", "must be between 0 and 1")
        if not 0.5 <= self.eta <= 1:
            raise bad("eta", "must be between 0.5 and 1 (a probability threshold of a 2-class softmax)")
        if not 0 <= self.ema < 1:
            raise bad("ema", "must be in [0, 1)")
        if self.sigma_d <= 0 or self.sigma_r <= 0:
            raise VoxudaInputError(f"--sigma-d/--sigma-r {self.sigma_d}/{self.sigma_r}: must be positive")
        for name in ("seg_weight", "con_weight", "dis_weight", "pl_weight"):
            if getattr(self, name) < 0:
                raise bad(name, "must not be negative")
        if len(self.con_lambdas) != 4 or any(v < 0 for v in self.con_lambdas):
            raise bad("con_lambdas", "give four non-negative weights (f_c, f_v2, f_v4, f_v6)")
        if self.threads is not None and self.threads < 1:
            raise bad("threads", "must be at least 1")
        if self.workers < 0:
            raise bad("workers", "must not be negative")

    def replace(self, **changes: Any) -> TrainSettings:
        return dataclasses.replace(self, **changes)
