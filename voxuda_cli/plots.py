"""PNG figures people would rather look at than read: slice montages and training curves."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from voxuda_cli.io.atomic import atomic_output


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def central_slice(volume: np.ndarray, axis: int = 0) -> np.ndarray:
    """The middle slice of a 3D volume along ``axis``."""
    volume = np.asarray(volume)
    return np.take(volume, volume.shape[axis] // 2, axis=axis)


def save_montage(
    path: Path | str,
    columns: Mapping[str, Sequence[np.ndarray]],
    row_labels: Sequence[str] | None = None,
    title: str | None = None,
    axis: int = 0,
) -> Path:
    """A grid of central slices: one column per kind (e.g. input / denoised / prediction), one row per sample.

    Greyscale volumes are shown with robust (1-99 %) contrast; masks (0/1) as they are.
    """
    plt = _pyplot()
    kinds = list(columns)
    n_rows = max(len(v) for v in columns.values())
    fig, axes = plt.subplots(n_rows, len(kinds), figsize=(2.2 * len(kinds), 2.2 * n_rows), squeeze=False)
    for col, kind in enumerate(kinds):
        for row in range(n_rows):
            ax = axes[row][col]
            ax.set_xticks([])
            ax.set_yticks([])
            if row >= len(columns[kind]):
                ax.axis("off")
                continue
            image = central_slice(columns[kind][row], axis)
            low, high = np.percentile(image, [1, 99]) if image.max() > 1 or image.min() < 0 else (0.0, 1.0)
            ax.imshow(image, cmap="gray", vmin=low, vmax=high if high > low else low + 1, interpolation="nearest")
            if row == 0:
                ax.set_title(kind, fontsize=9)
            if col == 0 and row_labels is not None and row < len(row_labels):
                ax.set_ylabel(row_labels[row], fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def save_curves(
    path: Path | str,
    records: Sequence[Mapping[str, float]],
    x_key: str = "epoch",
    groups: Mapping[str, Sequence[str]] | None = None,
    title: str | None = None,
) -> Path:
    """Line plots of per-epoch metrics: one panel per group of keys (losses, Dice, coverage...)."""
    plt = _pyplot()
    if groups is None:
        keys = sorted({k for r in records for k, v in r.items() if k != x_key and isinstance(v, (int, float))})
        groups = {"metrics": keys}
    panels = {name: [k for k in keys if any(k in r for r in records)] for name, keys in groups.items()}
    panels = {name: keys for name, keys in panels.items() if keys}
    fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(4.2 * max(len(panels), 1), 3.2), squeeze=False)
    for ax, (name, keys) in zip(axes[0], panels.items()):
        for key in keys:
            points = [(r[x_key], r[key]) for r in records if key in r and r[key] is not None]
            if points:
                xs, ys = zip(*points)
                ax.plot(xs, ys, marker="o" if len(points) < 30 else None, markersize=3, label=key)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel(x_key)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig, path: Path | str) -> Path:
    plt = _pyplot()
    path = Path(path)
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path
