"""Label-free checkpoint selection: keep the epoch expected to segment the target best.

A user's target has no labels, so the last epoch of an adaptation run is kept only if nothing says
it is worse than an earlier one. From the end of the burn-in (the model before any adaptation
step: a source-only network) every epoch's weights are a *candidate* (``candidates/epoch_NNN.pt``),
scored on a fixed probe of the unlabelled target (up to PROBE_SIZE volumes) with figures that
need no labels (docs/METHOD.md "Checkpoint selection"):

- ``sel_stability``: mean Dice between the masks of the probe and of its flipped copy, flipped
  back. A network that segments the particle gives the same mask either way; one that follows the
  noise texture gives fragments that move.
- ``sel_foreground``: the probe's foreground fraction over the source masks' (1: as much
  macromolecule as the source boxes hold; a collapse or a flood is far from it).
- ``sel_entropy``: mean binary entropy of the probe's probabilities.
- ``sel_agreement``: Dice of the masks with those of the burn-in candidate (how far adaptation moved).

``--select`` names the rule that picks among them (SELECTORS; near-ties, within TIE_TOLERANCE, go to
the later epoch); ``last`` keeps the final epoch. The
chosen candidate becomes ``model.pt`` (what ``predict`` loads); the final epoch stays as
``model_last.pt`` when it was not chosen. The rule was chosen by its rank correlation with the true
Dice over the benchmark's runs (benchmarks/results.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from voxuda_cli.io.atomic import atomic_torch_save

PROBE_SIZE = 64
CANDIDATES = "candidates"
LAST_MODEL = "model_last.pt"
CHOICE = "selection.json"
# A candidate whose target foreground is beyond this factor of the source masks' either way has
# collapsed or flooded, whatever its other figures say (the guard's default band, guards.py).
FOREGROUND_BAND = 4.0
# Scores closer than this to the best are a tie, won by the later epoch: on a 64-volume probe smaller
# differences are noise, and a later epoch has trained longer (benchmarks/results.md: on one run the
# burn-in model won by under 0.001 and cost 8 Dice; the tolerance was checked leaving one target out).
TIE_TOLERANCE = 0.005
FIGURES = ("sel_stability", "sel_foreground", "sel_entropy", "sel_agreement")


def probe_indices(count: int) -> list[int]:
    """A fixed, evenly spread probe of the target (the same every epoch and on --resume)."""
    if count <= PROBE_SIZE:
        return list(range(count))
    return [round(i * (count - 1) / (PROBE_SIZE - 1)) for i in range(PROBE_SIZE)]


@torch.no_grad()
def probe_masks(
    predict: Callable[[torch.Tensor], torch.Tensor], probe: torch.Tensor, batch_size: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(foreground probabilities, masks, masks of the flipped probe flipped back) of (N, D, H, W) volumes."""
    probabilities, flipped = [], []
    for start in range(0, probe.shape[0], batch_size):
        images = probe[start : start + batch_size].unsqueeze(1)
        probabilities.append(torch.softmax(predict(images).float(), dim=1)[:, 1].cpu())
        mirrored = torch.softmax(predict(images.flip(dims=(2, 3, 4))).float(), dim=1)[:, 1]
        flipped.append(mirrored.flip(dims=(1, 2, 3)).cpu())
    p = torch.cat(probabilities)
    return p, p > 0.5, torch.cat(flipped) > 0.5


def _dice(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean per-sample Dice of boolean (N, ...) masks (1 where both are empty)."""
    a, b = a.flatten(1).float(), b.flatten(1).float()
    total = a.sum(1) + b.sum(1)
    dice = torch.where(total > 0, 2 * (a * b).sum(1) / total.clamp_min(1), torch.ones_like(total))
    return float(dice.mean())


def probe_figures(
    probabilities: torch.Tensor,
    masks: torch.Tensor,
    flipped: torch.Tensor,
    source_foreground: float,
    reference: torch.Tensor | None,
) -> dict[str, float]:
    """The label-free figures of one candidate (FIGURES); ``reference``: the burn-in candidate's masks."""
    p = probabilities.clamp(1e-6, 1 - 1e-6)
    entropy = -(p * p.log() + (1 - p) * (1 - p).log()) / math.log(2)
    return {
        "sel_stability": _dice(masks, flipped),
        "sel_foreground": float(masks.float().mean()) / max(source_foreground, 1e-6),
        "sel_entropy": float(entropy.mean()),
        "sel_agreement": _dice(masks, reference) if reference is not None else 1.0,
    }


def _stability(figures: Mapping[str, float]) -> float:
    return figures["sel_stability"]


def _stability_sized(figures: Mapping[str, float]) -> float:
    """Stability, less the log-distance of the foreground from the source's (a flood or a collapse)."""
    return figures["sel_stability"] - 0.5 * abs(math.log(max(figures["sel_foreground"], 1e-6)))


def _low_entropy(figures: Mapping[str, float]) -> float:
    return -figures["sel_entropy"]


# --select: name -> score (higher is better); "last" keeps the final epoch.
SELECTORS: dict[str, Callable[[Mapping[str, float]], float] | None] = {
    "last": None,
    "stability": _stability,
    "stability-sized": _stability_sized,
    "entropy": _low_entropy,
}


def in_band(figures: Mapping[str, float]) -> bool:
    """Foreground within FOREGROUND_BAND of the source's: no collapse (an empty mask is stable), no flood."""
    return 1.0 / FOREGROUND_BAND <= figures["sel_foreground"] <= FOREGROUND_BAND


def choose(history: Sequence[Mapping[str, Any]], rule: str) -> dict[str, Any] | None:
    """The chosen candidate among the epochs of ``history`` that have figures, and why; None if none.

    A rule ranks the candidates whose foreground is in band (all of them if none is).
    """
    candidates = [record for record in history if "sel_stability" in record]
    if not candidates:
        return None
    score = SELECTORS[rule]
    last = candidates[-1]
    if score is None:
        best, why = last, "--select last: the final epoch"
    else:
        ranked = [record for record in candidates if in_band(record)] or candidates
        top = max(score(record) for record in ranked)
        best = max((r for r in ranked if score(r) >= top - TIE_TOLERANCE), key=lambda record: record["epoch"])
        why = (
            f"--select {rule}: the best label-free score of {len(ranked)} of the {len(candidates)} candidates "
            f"(epochs {candidates[0]['epoch']}-{last['epoch']}; {score(best):.3f} against the final epoch's "
            f"{score(last):.3f})"
        )
    return {
        "epoch": int(best["epoch"]),
        "final_epoch": int(last["epoch"]),
        "rule": rule,
        "why": why,
        "figures": {k: best[k] for k in FIGURES},
    }


def candidate_name(epoch: int) -> str:
    return f"{CANDIDATES}/epoch_{epoch:03d}.pt"


class CandidateProbe:
    """The fixed probe of a run's unlabelled target, and the burn-in candidate's masks on it."""

    def __init__(self, target: torch.Tensor, source_foreground: float, reference_path: Any) -> None:
        self.images = target[probe_indices(int(target.shape[0]))]
        self.source_foreground = source_foreground
        self.reference_path = reference_path  # persisted, so a --resume compares with the same masks
        self.reference: torch.Tensor | None = None
        if reference_path.is_file():
            self.reference = torch.load(reference_path, weights_only=True).bool()

    def figures(self, predict: Callable[[torch.Tensor], torch.Tensor], batch_size: int) -> dict[str, float]:
        probabilities, masks, flipped = probe_masks(predict, self.images, batch_size)
        if self.reference is None:  # the first candidate is the burn-in's model
            self.reference = masks
            atomic_torch_save(self.reference_path, masks.to(torch.uint8))
        return probe_figures(probabilities, masks, flipped, self.source_foreground, self.reference)
