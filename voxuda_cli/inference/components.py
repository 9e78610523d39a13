"""Remove connected foreground components smaller than a voxel count (face connectivity, as scipy's default).

For a whole-tomogram mask in a memory map, labelling it at once would need an int32 label array
of the full volume; :func:`remove_small_components_chunked` labels z-slabs on their own and
joins components that touch across slab borders (union-find), so memory stays at one slab.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import ndimage


def remove_small_components(mask: np.ndarray, min_size: int) -> np.ndarray:
    """A copy of a binary mask without components of fewer than ``min_size`` voxels (uint8)."""
    mask = np.asarray(mask) > 0
    if min_size <= 1 or not mask.any():
        return mask.astype(np.uint8)
    labels, count = ndimage.label(mask)
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    keep = sizes >= min_size
    keep[0] = False
    return keep[labels].astype(np.uint8)


class _UnionFind:
    def __init__(self) -> None:
        self.parent: list[int] = [0]  # id 0 is background

    def add(self, count: int) -> int:
        """Add ``count`` new sets; return the first id."""
        first = len(self.parent)
        self.parent.extend(range(first, first + count))
        return first

    def find(self, item: int) -> int:
        root = item
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[item] != root:  # path compression
            self.parent[item], item = root, self.parent[item]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def _slab_labels(mask: np.ndarray, start: int, stop: int, offset: int) -> tuple[np.ndarray, int]:
    labels, count = ndimage.label(np.asarray(mask[start:stop]) > 0)
    labels[labels > 0] += np.int32(offset - 1)
    return labels, count


def remove_small_components_chunked(
    mask: np.ndarray,
    min_size: int,
    slab: int = 8,
    release: Callable[[int, int], None] | None = None,
) -> int:
    """Remove small components from a (D, H, W) mask in place, ``slab`` z-rows at a time.

    Gives the same result as :func:`remove_small_components`. Two passes: label slabs, join labels
    across slab borders and count sizes; then label again (deterministic) and clear the small
    ones. ``release(start, stop)`` is called after each slab is done with. Returns the number of
    voxels removed.
    """
    if min_size <= 1:
        return 0
    depth = mask.shape[0]
    sets = _UnionFind()
    sizes: list[int] = [0]
    previous_last: np.ndarray | None = None
    firsts: list[int] = []
    for start in range(0, depth, slab):
        stop = min(start + slab, depth)
        first = len(sets.parent)
        labels, count = _slab_labels(mask, start, stop, first)
        sets.add(count)
        firsts.append(first)
        sizes.extend(np.bincount(labels.ravel(), minlength=first + count)[first:].tolist())
        if previous_last is not None:
            touching = (previous_last > 0) & (labels[0] > 0)
            for a, b in set(zip(previous_last[touching].tolist(), labels[0][touching].tolist())):
                sets.union(a, b)
        previous_last = labels[-1].copy()
        if release is not None:
            release(start, stop)
    totals = np.zeros(len(sets.parent), dtype=np.int64)
    roots = np.array([sets.find(i) for i in range(len(sets.parent))], dtype=np.int64)
    np.add.at(totals, roots, np.asarray(sizes, dtype=np.int64))
    keep = totals[roots] >= min_size
    keep[0] = False
    removed = 0
    for first, start in zip(firsts, range(0, depth, slab)):
        stop = min(start + slab, depth)
        labels, _ = _slab_labels(mask, start, stop, first)
        drop = (labels > 0) & ~keep[labels]
        if drop.any():
            removed += int(drop.sum())
            rows = np.asarray(mask[start:stop]).copy()
            rows[drop] = 0
            mask[start:stop] = rows
        if release is not None:
            release(start, stop)
    return removed
