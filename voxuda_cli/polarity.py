"""Contrast polarity from the data: is protein bright (what every voxuda network expects) or dark?

Raw tomograms usually show protein dark; simulations and most reconstructions after inversion show
it bright. A network fed the wrong polarity segments the background, silently. Two label-free
votes per box, on the box low-passed (Gaussian, LOWPASS_SIGMA voxels: the noise averages out,
macromolecules do not) and z-scored:

- **skewness**: protein is a minority of the voxels and denser than the solvent, so the
  low-passed values have a long tail on the protein's side (positive skew when bright);
- **centre contrast**: the mean of the central ball (radius box/6) minus the mean beyond box/3, for
  boxes centred on picks (extracted subtomograms), in units of the box's std.

Measured (docs/METHOD.md "Polarity"): the real EMPIAR-10499 ribosomes vote bright with 70 % of
skewness votes and 100 % of centre votes; simulated randomized-source boxes 72 % and 97 %, and
exactly the mirror image when inverted. The verdict is the share of positive votes over both
(``bright`` at >= DECISIVE, ``dark`` at <= 1 - DECISIVE, else ``unclear``, which is never acted on).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from voxuda_cli.errors import VoxudaInputError
from voxuda_cli.fields import check_polarity

log = logging.getLogger("voxuda")

LOWPASS_SIGMA = 1.5
DECISIVE = 0.6
MAX_BOXES = 256  # votes enough for a verdict; evenly spread over the set


@dataclass(frozen=True)
class Polarity:
    verdict: str  # "bright", "dark" or "unclear"
    bright_votes: float  # share of positive votes, in [0, 1]
    boxes: int

    def describe(self) -> str:
        return f"protein looks {self.verdict} ({100 * self.bright_votes:.0f} % of {2 * self.boxes} votes bright)"


def _votes(box: np.ndarray) -> tuple[float, float]:
    smooth = ndimage.gaussian_filter(box.astype(np.float64), LOWPASS_SIGMA)
    centred = smooth - smooth.mean()
    std = centred.std()
    if std == 0:
        return 0.0, 0.0
    skew = float(np.mean(centred**3) / std**3)
    grid = np.indices(box.shape) - ((np.array(box.shape) - 1) / 2)[:, None, None, None]
    radius = np.sqrt((grid**2).sum(axis=0))
    edge = min(box.shape)
    centre = float((centred[radius < edge / 6].mean() - centred[radius > edge / 3].mean()) / std)
    return skew, centre


def detect_polarity(images: np.ndarray, negate: bool = False) -> Polarity:
    """The verdict on (N, D, H, W) boxes (or one (D, H, W) box), negated first when ``negate``."""
    stack = images[None] if images.ndim == 3 else images
    picks = np.unique(np.linspace(0, len(stack) - 1, min(len(stack), MAX_BOXES)).round().astype(int))
    sign = -1.0 if negate else 1.0
    votes = np.array([_votes(sign * np.asarray(stack[i], dtype=np.float32)) for i in picks])
    decided = votes[votes != 0]
    share = float((decided > 0).mean()) if decided.size else 0.5
    verdict = "bright" if share >= DECISIVE else "dark" if share <= 1 - DECISIVE else "unclear"
    return Polarity(verdict, share, len(picks))


def resolve_polarity(images: np.ndarray, mode: str, option: str, inverted: bool, remedy: str | None = None) -> bool:
    """Whether to flip ``images`` (as read; ``inverted``: --invert flips them) under --polarity ``mode``.

    ``check`` refuses data that looks dark as it stands, ``auto`` flips it, ``off`` looks at nothing;
    ``remedy`` replaces the refusal's advice.
    """
    if mode == "off":
        return False
    check_polarity(mode)
    found = detect_polarity(images, negate=inverted)
    as_fed = "after --invert" if inverted else "as read"
    log.info("%s: %s %s", option, found.describe(), as_fed)
    if found.verdict != "dark":
        return False
    if mode == "auto":
        log.warning("%s: %s %s; --polarity auto flips it", option, found.describe(), as_fed)
        return True
    hint = "drop --invert" if inverted else "pass --invert"
    remedy = remedy or f"{hint}, or --polarity auto to flip what looks dark"
    raise VoxudaInputError(
        f"{option}: {found.describe()} {as_fed}, and the network expects bright protein; {remedy}, "
        "or --polarity off to skip this check"
    )
