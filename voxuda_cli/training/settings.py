"""TrainSettings: every setting of ``voxuda train`` and its default (the paper's), in one place."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voxuda_cli import fields
from voxuda_cli.device import check_device
from voxuda_cli.errors import VoxudaInputError
from voxuda_cli.fields import setting
from voxuda_cli.filters.denoisers import check_denoiser
from voxuda_cli.filters.denoisers import names as denoiser_names
from voxuda_cli.training.methods import DEFAULT_METHOD, get_method
from voxuda_cli.training.methods import names as method_names
from voxuda_cli.training.selection import SELECTORS

TEACHER_INPUTS = ("denoised", "raw", "mean")
PL_LOSSES = ("ce", "balanced")
SOURCE_VIEWS = ("auto", "spectral", "ngm", "both", "none")
BN_STATISTICS = ("auto", "mixed", "source")
# The adaptation recipe fields (None in TrainSettings) for each --recipe; options given win.
# "paper": METHOD.md's literal reading of the paper (no burn-in, one eta, the teacher on the
# denoised target from the first step, the reversal ramp to 1 with the segmenter's Adam).
# "voxuda": the recipe chosen by measurement across seeds (benchmarks/results.md).
RECIPES: dict[str, dict[str, Any]] = {
    "paper": {
        "burn_in": 0.0,
        "pl_ramp": 0.0,
        "ema_warmup": True,
        "teacher_input": "denoised",
        "pl_threshold": "global",
        "pl_keep": 0.5,
        "pl_loss": "ce",
        "reversal_scale": 1.0,
        "dis_lr": 0.0,
        "source_view": "ngm",
        "spectral_strength": 0.5,
        "bn_statistics": "mixed",
        "dis_guard": 0.0,
        "pl_guard": 0.0,
    },
    "voxuda": {
        "burn_in": 0.5,
        "pl_ramp": 0.2,
        "ema_warmup": False,
        "teacher_input": "raw",
        "pl_threshold": "class-quantile",
        "pl_keep": 0.5,
        "pl_loss": "ce",
        "reversal_scale": 0.1,
        "dis_lr": 1e-4,
        "source_view": "auto",
        "spectral_strength": 1.0,
        "bn_statistics": "auto",
        "dis_guard": 1.0,
        "pl_guard": 4.0,
    },
}
DEFAULT_RECIPE = "voxuda"


def _recipe_names() -> tuple[str, ...]:
    return tuple(RECIPES)


def recipe_default(name: str) -> str:
    """The ``--help`` default of recipe field ``name``: every recipe's value."""
    values = ", ".join(f"{recipe} {values[name]}" for recipe, values in RECIPES.items())
    return f"[default: by --recipe: {values}]"


def recipe_setting(help: str, **metadata: Any) -> Any:
    """A field whose default comes from --recipe (None until __post_init__ fills it)."""
    return setting(None, help, default_help=recipe_default, **metadata)


# What may change between a run and its --resume (the hardware it runs on, and how long); the rest must match.
RESUMABLE_CHANGES = ("epochs", "device", "amp", "compile", "threads", "workers", "checkpoint_signals")


@dataclass
class TrainSettings:
    """Settings of ``voxuda train`` (the one source of their defaults; METHOD.md "Training")."""

    src: tuple[Path, ...] = setting((), "Labelled source dataset (.h5 with /masks, MRC files or folders).")
    tgt: tuple[Path, ...] = setting((), "Unlabelled target dataset (labelled for --method supervised).")
    val: tuple[Path, ...] = setting((), "Validation dataset; Dice/IoU per epoch if it has masks.")
    method: str = setting(DEFAULT_METHOD, "Training method: {choices}.", choices=method_names)
    denoiser: str = fields.denoiser(choices=denoiser_names)
    sigma_d: float = fields.sigma_d()
    sigma_r: float = fields.sigma_r()
    keep_rate: float = fields.keep_rate()
    n_sampled: int = setting(10, "NGM: target volumes sampled to estimate sigma_t.")
    # x_s' of L_seg and L_con. "spectral" (filters/spectral.py) carries any spectral nuisance of the
    # target (noise colour, MTF, background) where the NGM's white noise carries one sigma.
    source_view: str | None = recipe_setting(
        "The second source view: spectral (amplitudes moved towards a target volume's), ngm (+ white noise "
        "at sigma_t), both, none (x_s' = x_s), or auto: spectral where the source's spectra do not span the "
        "target's (training/data.resolve_source_view), else none.",
        choices=lambda: SOURCE_VIEWS,
    )
    spectral_strength: float | None = recipe_setting("Spectral view: most of the way to the target (U(0, s)).")
    # vox-uda's student sees source and target in one forward (training/loop.py says why).
    bn_statistics: str | None = recipe_setting(
        "Batch-norm statistics of the student's forward over source and target: mixed (both together), source (the "
        "source views' statistics normalise the target too, as a source-only network's would), or auto: "
        "source where the source's spectra span the target's (as --source-view auto decides), else mixed.",
        choices=lambda: BN_STATISTICS,
    )
    # benchmark-only settings (cli=False: not in --help; the library and --config set them)
    ngm_scale: float = setting(1.0, "NGM noise as a multiple of sigma_t (0: none, an ablation).", cli=False)
    noise: Path | None = setting(
        None, "A saved estimate (voxuda estimate-noise -o) instead of estimating here.", default_help="[default: off]"
    )
    pretrained: Path | None = setting(
        None,
        "mapseg: start the student from an earlier mapseg run's MAE stage (its run folder or checkpoint.pt, e.g. "
        "one stopped at its burn-in: --epochs E/2 --ramp-epochs E) and skip this run's; its burn-in trains L_seg.",
        default_help="[default: off]",
    )
    epochs: int = setting(300, "Passes over the labelled set.")
    batch_size: int = fields.batch_size(16, "samples per step (the global batch under torchrun)")
    lr: float = setting(1e-3, "Adam learning rate.")
    lr_step: int = setting(100, "Epochs between learning-rate decays.")
    lr_gamma: float = setting(0.1, "Learning-rate decay factor.")
    width: int = setting(32, "VoxResNet width C.")
    eta: float = fields.eta()
    ema: float = setting(0.99, "Teacher EMA decay.")
    seg_weight: float = setting(1.0, "Weight of L_seg.")
    con_weight: float = setting(1.0, "Weight of L_con.")
    dis_weight: float = setting(1.0, "Weight of L_dis.")
    pl_weight: float = setting(1.0, "Weight of L_pl.")
    con_lambdas: tuple[float, float, float, float] = setting(
        (0.2, 0.2, 0.3, 0.3), "L_con weights of f_c, f_v2, f_v4, f_v6."
    )
    ramp_epochs: int | None = setting(
        None, "Horizon of the DANN reversal ramp (epochs).", default_help="[default: --epochs at start]"
    )
    # Mean Teacher's exp(-5 (1 - t)^2) (METHOD.md). A young teacher labels nearly every target voxel
    # confident background; the ramp keeps those labels from locking the student into predicting nothing.
    pl_warmup: float = setting(0.0, "Epochs over which the L_pl weight ramps up (Mean Teacher); 0 = off.", cli=False)
    # The adaptation recipe (issue 11; training/schedule.py). Fractions are of the schedule's horizon
    # (--ramp-epochs, else the --epochs the run started with).
    recipe: str = setting(
        DEFAULT_RECIPE, "Adaptation recipe: {choices} (paper: METHOD.md's literal).", choices=_recipe_names
    )
    burn_in: float | None = recipe_setting("Fraction trained without L_pl and L_dis; then teacher := student.")
    pl_ramp: float | None = recipe_setting("Fraction after the burn-in over which the L_pl weight ramps in.")
    ema_warmup: bool | None = recipe_setting("Teacher decay min(--ema, 1 - 1/(k+1)) (Mean Teacher's warm-up).")
    teacher_input: str | None = recipe_setting(
        "What the teacher sees: {choices} (mean: of its probabilities on both).",
        choices=lambda: TEACHER_INPUTS,
    )
    pl_threshold: str | None = fields.pl_threshold(None, default_help=recipe_default)
    pl_keep: float | None = fields.pl_keep(None, default_help=recipe_default)
    pl_loss: str | None = recipe_setting(
        "L_pl: ce, or balanced (CE averaged per class + soft Dice on confident voxels).",
        choices=lambda: PL_LOSSES,
        cli=False,
    )
    reversal_scale: float | None = recipe_setting("Maximum of the DANN reversal weight.")
    dis_lr: float | None = recipe_setting("The discriminator's own Adam learning rate (0: shares the segmenter's).")
    # training/guards.py: the label-free guards (issue 23)
    dis_guard: float | None = recipe_setting(
        "Switch the adversarial term off when the running mean of L_dis exceeds this (chance: ln 2 = 0.69; 0: off)."
    )
    pl_guard: float | None = recipe_setting(
        "Pause L_pl while the teacher's foreground fraction is beyond this factor of the source's, either way (0: off)."
    )
    # stability: rank correlation +0.86 with the true Dice over the benchmark's candidates (benchmarks/results.md)
    select: str = setting(
        "stability",
        "Which epoch becomes model.pt, from the end of the burn-in on, by label-free figures on the target: "
        "{choices} (training/selection.py; last: the final epoch).",
        choices=lambda: tuple(SELECTORS),
    )
    # Flips only: data.random_flips says why there are no 90-degree rotations.
    augment: bool = setting(True, "Random flips of the labelled volumes.")
    invert: bool = fields.invert(" (before z-scoring)")
    polarity: str = fields.polarity("each training set (after --invert)")
    strict: bool = setting(False, "Refuse (instead of resample) a target voxel size > 1 % off the source's.")
    seed: int = fields.seed()
    device: str = fields.device()
    amp: bool = fields.amp()
    compile: bool = fields.compile_network()
    threads: int | None = setting(None, "Torch CPU threads.", default_help="[default: torch's]")
    # The data is in memory, so 0 is usually fastest.
    workers: int = setting(0, "Data-loading processes.")
    # A scheduler's time limit or preemption: SLURM sends SIGTERM, or SIGUSR1 with --signal=USR1@120.
    checkpoint_signals: tuple[str, ...] = setting(
        ("SIGTERM", "SIGUSR1"),
        "On this signal (repeatable; none: off) write a checkpoint at the current step and exit.",
        flags=("--checkpoint-signal",),
    )

    def __post_init__(self) -> None:
        for name in ("src", "tgt", "val"):
            value = getattr(self, name)
            if isinstance(value, (str, Path)):
                value = (value,)
            # Absolute, so a --resume from another folder compares (and config.toml records) the same paths.
            setattr(self, name, tuple(Path(v).absolute() for v in value))
        if self.noise is not None:
            self.noise = Path(self.noise).absolute()
        self.con_lambdas = tuple(float(v) for v in self.con_lambdas)  # type: ignore[assignment]  # a TOML list made the declared tuple
        names = (self.checkpoint_signals,) if isinstance(self.checkpoint_signals, str) else self.checkpoint_signals
        self.checkpoint_signals = tuple(str(v) for v in names if str(v).lower() != "none")
        if self.recipe not in RECIPES:
            raise VoxudaInputError(f"--recipe {self.recipe}: unknown recipe; use one of {', '.join(RECIPES)}")
        for name, value in RECIPES[self.recipe].items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        self._check()
        self._check_recipe()

    def _check(self) -> None:
        def bad(option: str, problem: str) -> VoxudaInputError:
            return VoxudaInputError(f"--{option.replace('_', '-')} {getattr(self, option)}: {problem}")

        get_method(self.method)
        check_denoiser(self.denoiser)
        check_device(self.device)
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
        for name in ("seg_weight", "con_weight", "dis_weight", "pl_weight", "ngm_scale"):
            if getattr(self, name) < 0:
                raise bad(name, "must not be negative")
        if len(self.con_lambdas) != 4 or any(v < 0 for v in self.con_lambdas):
            raise bad("con_lambdas", "give four non-negative weights (f_c, f_v2, f_v4, f_v6)")
        if self.threads is not None and self.threads < 1:
            raise bad("threads", "must be at least 1")
        if self.workers < 0:
            raise bad("workers", "must not be negative")
        self.signal_numbers()  # checked here, before anything runs

    def signal_numbers(self) -> tuple[int, ...]:
        """The checkpoint signals as numbers (an unknown or uncatchable name is an input error)."""
        import signal

        from voxuda_cli.signals import parse_signal

        numbers = []
        for name in self.checkpoint_signals:
            try:
                number = parse_signal(name)
            except (KeyError, ValueError):
                number = -1
            if number in (-1, signal.SIGKILL, signal.SIGSTOP):
                raise VoxudaInputError(
                    f"--checkpoint-signal {name}: not a signal a program can catch; use e.g. SIGTERM, SIGUSR1 or none"
                )
            numbers.append(number)
        return tuple(numbers)

    def _check_recipe(self) -> None:
        def bad(option: str, problem: str) -> VoxudaInputError:
            return VoxudaInputError(f"--{option.replace('_', '-')} {getattr(self, option)}: {problem}")

        for name, choices in (
            ("teacher_input", TEACHER_INPUTS),
            ("pl_loss", PL_LOSSES),
            ("source_view", SOURCE_VIEWS),
            ("bn_statistics", BN_STATISTICS),
            ("select", tuple(SELECTORS)),
        ):
            if getattr(self, name) not in choices:
                raise bad(name, f"unknown; use one of {', '.join(choices)}")
        if self.pretrained is not None and self.method != "mapseg":
            raise bad("pretrained", "is mapseg's MAE stage; use it with --method mapseg")
        if self.pretrained is not None and not self.burn_in:
            raise bad("pretrained", "needs a burn-in (--burn-in > 0): the teacher is the student at its end")
        for name in ("burn_in", "pl_ramp"):
            if not 0 <= getattr(self, name) < 1:
                raise bad(name, "must be a fraction of the training schedule in [0, 1)")
        if not 0 <= self.spectral_strength <= 1:  # type: ignore[operator]  # set by the recipe in __post_init__
            raise bad("spectral_strength", "must be in [0, 1]")
        fields.check_pl_selection(self.pl_threshold, self.pl_keep)
        fields.check_polarity(self.polarity)
        if self.pl_guard and self.pl_guard <= 1:
            raise bad("pl_guard", "must be 0 (off) or a factor above 1")
        for name in ("reversal_scale", "dis_lr", "dis_guard"):
            if getattr(self, name) < 0:
                raise bad(name, "must not be negative")

    def replace(self, **changes: Any) -> TrainSettings:
        return dataclasses.replace(self, **changes)
