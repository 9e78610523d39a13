"""Settings fields: each setting's default and help text, written once, as dataclass field metadata.

A settings dataclass declares ``name: type = setting(default, "Help.")``; the command-line options
of its command are generated from those fields (voxuda_cli/cli/options.py), so a new setting is
one line in one place and ``--help`` shows it with its default. Metadata keys:

- ``help``: the help text; ``{choices}`` in it is filled from ``choices()`` (e.g. a registry's names);
- ``default_help``: what ``--help`` says instead of ``[default: <value>]`` (e.g. "the model file's"),
  or a function of the field's name that returns it;
- ``flags``: the option's names, where they are not ``--field-name`` (``--x/--no-x`` for booleans);
- ``cli_type`` and ``parse``: the type typer reads, and a function from it to the field's value;
- ``cli``: False for a field that is no command-line option.

The factories below are the settings several commands share (one help text, one default each).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from voxuda_cli.errors import VoxudaInputError

DEVICE_CHOICES = ("auto", "cpu", "cuda")  # or cuda:N
DEFAULT_DENOISER = "ibf"  # the paper's (METHOD.md)
DEFAULT_SIGMA_D = 120.0  # (I)BF spatial sigma, voxels: so wide that the 3x3x3 window is nearly flat
DEFAULT_SIGMA_R = 1.2  # (I)BF range sigma, z-score units
DEFAULT_KEEP_RATE = 0.244  # NGM: the paper's fraction of highest-frequency coefficients
DEFAULT_ETA = 0.85  # pseudo-label confidence threshold (METHOD.md)
WEIGHT_CHOICES = ("teacher", "student")
PL_THRESHOLDS = ("global", "class-quantile")
POLARITY_CHOICES = ("check", "auto", "off")  # polarity.resolve_polarity
FROM_MODEL = "[default: the model file's, else the filter's default]"


def setting(default: Any = None, help: str = "", **metadata: Any) -> Any:
    """A settings field with its help text (and any of the metadata keys above)."""
    return dataclasses.field(default=default, metadata={"help": help, **metadata})


def help_text(field: dataclasses.Field[Any]) -> str:
    """The field's ``--help`` line: its help text, its choices filled in, then its default."""
    text = str(field.metadata.get("help", ""))
    choices: Callable[[], tuple[str, ...]] | None = field.metadata.get("choices")
    if choices is not None:
        text = text.replace("{choices}", ", ".join(choices()))
    if "default_help" in field.metadata:
        default_help = field.metadata["default_help"]
        return f"{text} {default_help(field.name) if callable(default_help) else default_help}".strip()
    default = field.default if field.default is not dataclasses.MISSING else None
    if isinstance(default, (list, tuple)):
        default = " ".join(str(v) for v in default) or None
    return f"{text} [default: {'none' if default is None else default}]".strip()


def sigma_d(default: float | None = DEFAULT_SIGMA_D, **metadata: Any) -> Any:
    return setting(default, "(I)BF spatial (domain) sigma, voxels.", **metadata)


def sigma_r(default: float | None = DEFAULT_SIGMA_R, **metadata: Any) -> Any:
    return setting(default, "(I)BF range sigma, z-score units.", **metadata)


def keep_rate(default: float | None = DEFAULT_KEEP_RATE, **metadata: Any) -> Any:
    return setting(default, "NGM: fraction of the highest-frequency Fourier coefficients taken as noise.", **metadata)


def denoiser(default: str | None = DEFAULT_DENOISER, **metadata: Any) -> Any:
    """The teacher's denoiser; the caller passes ``choices`` (the registry of filters.denoisers: shared
    modules import no stage)."""
    return setting(
        default, "Denoiser of the teacher's input where --teacher-input is denoised or mean: {choices}.", **metadata
    )


def eta(default: float | None = DEFAULT_ETA, **metadata: Any) -> Any:
    return setting(default, "Pseudo-label confidence threshold (class probability).", **metadata)


def pl_threshold(default: str | None, **metadata: Any) -> Any:
    help = "Pseudo-label selection: global (--eta) or class-quantile (CBST)."
    return setting(default, help, choices=lambda: PL_THRESHOLDS, **metadata)


def pl_keep(default: float | None, **metadata: Any) -> Any:
    return setting(default, "class-quantile: fraction of each class's predicted voxels kept.", **metadata)


def check_pl_selection(threshold: str | None, keep: float | None) -> None:
    """The pseudo-label selection settings of ``train`` and ``pseudo-label`` (None: not set yet)."""
    if threshold is not None and threshold not in PL_THRESHOLDS:
        raise VoxudaInputError(f"--pl-threshold {threshold}: unknown; use one of {', '.join(PL_THRESHOLDS)}")
    if keep is not None and not 0.0 < float(keep) <= 1.0:
        raise VoxudaInputError(f"--pl-keep {keep}: must be in (0, 1] (a fraction of each class)")


def use(default: str) -> Any:
    return setting(default, "Weights of the model file: {choices}.", choices=lambda: WEIGHT_CHOICES)


def batch_size(default: int, what: str) -> Any:
    return setting(default, f"Batch size: {what}.")


def device() -> Any:
    return setting("auto", "auto (CUDA when present, else CPU), cpu, or cuda[:N].")


def amp() -> Any:
    return setting(False, "Mixed precision: bf16 on CPUs with AMX (else float32), bf16 or fp16 on CUDA.")


def compile_network() -> Any:
    # Off by default: measured on a 2-core CPU (benchmarks/results.md) compiling costs minutes of
    # start-up and needs a C++ compiler; see voxuda_cli/models/speed.py.
    return setting(False, "torch.compile the network (falls back to eager where it cannot compile).")


def invert(what: str = "") -> Any:
    return setting(False, f"Flip contrast of data whose protein is dark{what}.")


def polarity(what: str = "the data") -> Any:
    return setting(
        "check",
        f"Contrast polarity of {what}, detected (polarity.py): check (refuse what looks dark), auto (flip it), off.",
        choices=lambda: POLARITY_CHOICES,
    )


def check_polarity(value: str) -> None:
    if value not in POLARITY_CHOICES:
        raise VoxudaInputError(f"--polarity {value}: unknown; use one of {', '.join(POLARITY_CHOICES)}")


def seed() -> Any:
    return setting(0, "Random seed (the same seed repeats a run exactly on CPU).")


def centre(**metadata: Any) -> Any:
    """Where RELION 5's centred coordinates have their origin; the caller passes ``choices``
    (io.coordinates.CENTRE_CHOICES), read by extract and written by picks alike."""
    return setting(
        "half", "RELION 5 centred coordinates: centre at size/2 (half) or size/2 - 1: {choices}.", **metadata
    )


def shard() -> Any:
    """``--shard I/N``: one share of a project's inputs (io.sources.in_shard)."""
    return setting(
        None,
        "Only shard I of N of the inputs (I/N): a stable partition by file name, so a SLURM array, "
        "make -j or GNU parallel runs one shard each.",
        default_help="[default: all]",
    )


def skip_existing() -> Any:
    return setting(
        False,
        "Skip inputs whose outputs exist (written atomically: one that exists is complete; a killed run leaves none).",
    )


def input_voxel_size() -> Any:
    """The inputs' voxel size, for headers that lost it (0 or 1.0 A are refused without it)."""
    return setting(
        None,
        "Voxel size of the inputs (A), overriding their headers; needed where a header says 0 or 1.0 A.",
        default_help="[default: the headers']",
    )
