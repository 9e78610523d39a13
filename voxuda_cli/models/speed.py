"""Preparing a network for speed: the channels-last memory layout, mixed precision and torch.compile.

One place for both, called once by the Trainer (student/discriminator and teacher) and once by the
Predictor (for a network it loaded itself).

- ``channels_last_3d`` on CPU: oneDNN's 3D convolutions run on NDHWC without reordering each layer's
  input and output (benchmarks/bench_train.py measures it against the default layout in one run).
  Converting the weights is enough: a convolution whose weight is channels-last gives a
  channels-last output, and every later layer follows. On CUDA it was not measured, so it stays off.
- Mixed precision (``--amp``): bf16 autocast on CPUs with AMX (measured 1.5x a channels-last fp32
  training step, benchmarks/results.md; AVX512-BF16 without AMX gave NaN steps, so float32 there),
  bf16 or else fp16 on CUDA. Off by default: bf16 keeps 8 bits of mantissa, so losses and predictions move by about
  1e-2 against float32, and the paper's figures are float32.
- ``torch.compile`` (inductor) needs a C++ compiler at run time on CPU. Where there is none, or
  compiling fails, the network runs eagerly with a warning (``suppress_errors``), never an error.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from typing import Any

import torch
from torch import nn

log = logging.getLogger("voxuda")


def uses_channels_last(device: torch.device) -> bool:
    return device.type == "cpu"


def autocast_dtype(amp: bool, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``--amp`` on ``device`` (None: float32 throughout)."""
    if not amp:
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_has_bf16():
        log.info("--amp: bf16 autocast on the CPU (it has AMX)")
        return torch.bfloat16
    log.warning("--amp: this %s has no fast bf16 (AMX); running in float32", device.type)
    return None


def cpu_has_bf16() -> bool:
    """Whether this CPU runs bf16 training well: oneDNN's bf16 kernels on AMX tiles.

    AVX512-BF16 alone is not enough: on an AMD EPYC with it and no AMX, bf16 training steps of
    torch 2.13 went NaN, differently from run to run (tests/models/test_speed.py), so ``--amp``
    stays float32 there.
    """
    if not (torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()):
        return False
    return "amx_bf16" in cpu_flags()


def cpu_flags() -> set[str]:
    """The CPU's feature flags (Linux /proc/cpuinfo; empty elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def autocast(dtype: torch.dtype | None, device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """torch.autocast for ``dtype`` from ``autocast_dtype``, or nothing."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def can_compile(device: torch.device) -> bool:
    """Whether torch.compile can work here: the installed torch has it, and on CPU a C++ compiler exists."""
    if not hasattr(torch, "compile"):
        return False
    if device.type == "cpu":
        return any(shutil.which(name) for name in (os.environ.get("CXX", "c++"), "g++", "clang++"))
    return True


def prepare_network(module: nn.Module, device: torch.device, compile: bool = False) -> nn.Module:
    """In place: ``module`` in the layout that is fastest on ``device`` and, if asked, compiled.

    ``module.compile()`` compiles its ``__call__`` only and keeps its parameters and state-dict keys
    (no ``_orig_mod.`` prefix), so checkpoints and model files do not depend on the setting.
    """
    if uses_channels_last(device):
        module.to(memory_format=torch.channels_last_3d)  # type: ignore[call-overload]  # Module.to(memory_format=...) exists; its stubs list only the device/dtype forms
    if compile:
        if can_compile(device):
            import torch._dynamo as dynamo  # (a plain ``import torch._dynamo`` would make ``torch`` local here)

            dynamo.config.suppress_errors = True  # a failed compile runs eagerly (with a warning)
            module.compile()
        else:
            log.warning("--compile: torch.compile cannot run here (no C++ compiler on PATH); running eagerly")
    return module
