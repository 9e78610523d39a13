"""Where large windows go in a whole tomogram: each voxel computed once, with context on every side.

VoxResNet is fully convolutional, so a window can be far larger than the training box; what a
window's border voxels lack is context (they see zero padding). A :class:`TilePlan` places
windows of ``window`` voxels per axis so that their *cores* (the window less ``margin`` voxels on
every side that has a neighbouring window) partition the grid exactly: every voxel is predicted
by one window, at least ``margin`` voxels from that window's border unless it is within
``margin`` of the tomogram's own border (where there are no neighbours to see). The last window
along an axis sits flush with the far border; its core starts where the previous one ended.

Margin: VoxResNet's theoretical receptive field is ~146 voxels (three stride-2 stages, two
residual modules each, and a x8 transposed head), but its weights were trained on 32^3 boxes,
whose centre voxels saw 16 voxels on every side. Measured on two trained width-8 networks
(docs/METHOD.md, "Whole tomograms"): against a 160^3 context, the masks of a 32^3 centre change
in 27 % and 6 % of voxels with no margin, 4.2 % and 2.8 % at 16, 0.6 % and 0.05 % at 32,
<0.03 % at 48. Default 16 (every voxel gets at least the context of a training box's centre);
``--margin 32`` where seams matter more than speed.

Window edges are multiples of ``multiple`` (8: VoxResNet's three stride-2 stages), at most
``window`` (one edge, or one per axis) and the volume's edge (rounded up), at least ``minimum`` (the
model box), and per axis the smallest that needs no more windows than the largest would
(``window_edges``). A memory budget gives per-axis limits (``window_caps``): a thin tomogram's
short axis is taken whole and the voxels it leaves go to the other two.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from voxuda_cli.errors import VoxudaInputError

Region = tuple[slice, slice, slice]


@dataclass(frozen=True)
class Tile:
    """One window: the region it reads and the core region (volume coordinates) whose results are kept."""

    window: Region
    core: Region

    @property
    def core_in_window(self) -> Region:
        return tuple(slice(c.start - w.start, c.stop - w.start) for c, w in zip(self.core, self.window))  # type: ignore[return-value]  # 3 slices, one per axis


def axis_tiles(length: int, edge: int, margin: int) -> list[tuple[int, int, int]]:
    """(window start, core start, core stop) along one axis; the cores partition [0, length)."""
    if edge >= length:
        return [(0, 0, length)]
    if edge <= 2 * margin:
        raise VoxudaInputError(f"--margin {margin}: must be under half the window ({edge}); lower it or raise --window")
    tiles, core_start = [], 0
    while core_start < length:
        start = max(0, min(core_start - margin, length - edge))
        core_stop = length if start + edge >= length else start + edge - margin
        tiles.append((start, core_start, core_stop))
        core_start = core_stop
    return tiles


def window_caps(shape: Sequence[int], voxels: float, multiple: int, minimum: int) -> tuple[int, int, int]:
    """Per axis, the largest window edge (a multiple of ``multiple``, at least ``minimum``) such that a
    window of those edges has at most ``voxels`` voxels: axes shorter than an even share taken whole
    (rounded up to ``multiple``), shortest first, the rest split evenly (a cube where none is short)."""
    caps = [0, 0, 0]
    remaining = float(voxels)
    for done, axis in enumerate(sorted(range(3), key=lambda a: int(shape[a]))):
        share = int(remaining ** (1 / (3 - done)) + 1e-6) // multiple * multiple
        whole = _round_up(int(shape[axis]), multiple)
        caps[axis] = max(whole if whole <= share else share, int(minimum))
        remaining /= caps[axis]
    return tuple(caps)  # type: ignore[return-value]  # 3 edges, one per axis


def window_edges(
    shape: Sequence[int], window: int | Sequence[int], multiple: int, minimum: int, margin: int = 0
) -> tuple[int, int, int]:
    """Per axis, the smallest edge (a multiple of ``multiple``, at least ``minimum``) that covers the axis
    with the fewest windows of at most ``window`` voxels (one edge for every axis, or one per axis).

    ``k`` windows whose cores tile ``n`` voxels need ``k * e - 2 (k - 1) margin >= n``; the largest
    allowed edge would compute more voxels for the same ``k`` (e.g. 2 x 192 against 2 x 144 for 256).
    """
    edges = []
    limits = [int(window)] * 3 if isinstance(window, int) else [int(w) for w in window]
    for length, limit in zip((int(n) for n in shape), limits):
        # The network needs multiples of ``multiple``: one window over an axis that is not one
        # reaches past the border (run_tiles pads it by edge replication).
        largest = max(min(limit, _round_up(length, multiple)) // multiple * multiple, int(minimum))
        edge = largest
        for count in range(1, length + 1):
            needed = -(-(length + 2 * (count - 1) * margin) // count)  # ceil
            needed = _round_up(needed, multiple)
            if needed <= largest:
                edge = max(min(needed, largest), int(minimum))
                break
        edges.append(edge)
    return tuple(edges)  # type: ignore[return-value]  # 3 edges, one per axis


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


@dataclass(frozen=True)
class TilePlan:
    """Windows of one edge per axis whose cores tile a volume of ``shape``."""

    shape: tuple[int, int, int]
    edges: tuple[int, int, int]
    margin: int
    axes: tuple[list[tuple[int, int, int]], ...]

    @classmethod
    def make(
        cls, shape: Sequence[int], window: int | Sequence[int], margin: int, multiple: int = 8, minimum: int = 32
    ) -> TilePlan:
        shape3 = tuple(int(n) for n in shape)
        edges = window_edges(shape3, window, multiple, minimum, int(margin))
        axes = tuple(axis_tiles(n, e, int(margin)) for n, e in zip(shape3, edges))
        return cls(shape3, edges, int(margin), axes)  # type: ignore[arg-type]  # a 3D shape: mypy cannot count a generator's tuple

    @property
    def n_windows(self) -> int:
        return math.prod(len(a) for a in self.axes)

    @property
    def computed_voxels(self) -> int:
        """Voxels the network computes (windows x window size): over the volume's, the redundancy."""
        return self.n_windows * math.prod(self.edges)

    def rows(self) -> Iterator[list[Tile]]:
        """Tiles grouped by z band, in z order (a band's tiles share their z window and core)."""
        for z in self.axes[0]:
            band = []
            for y in self.axes[1]:
                for x in self.axes[2]:
                    window = tuple(slice(a[0], a[0] + e) for a, e in zip((z, y, x), self.edges))
                    core = tuple(slice(a[1], a[2]) for a in (z, y, x))
                    band.append(Tile(window, core))  # type: ignore[arg-type]  # 3 slices, one per axis
            yield band
