import numpy as np
import pytest

from voxuda_cli.errors import VoxudaInputError
from voxuda_cli.inference.plan import TilePlan, axis_tiles, window_caps, window_edges


@pytest.mark.parametrize(("length", "edge", "margin"), [(64, 32, 8), (100, 40, 16), (257, 128, 16), (32, 32, 16)])
def test_cores_partition_the_axis_and_keep_their_margin(length: int, edge: int, margin: int) -> None:
    tiles = axis_tiles(length, edge, margin)
    covered = np.zeros(length, int)
    for start, core_start, core_stop in tiles:
        assert 0 <= start and start + min(edge, length) <= length
        assert start <= core_start < core_stop <= start + edge
        covered[core_start:core_stop] += 1
        # context: at least the margin on each side that has a neighbour in the volume
        assert core_start == 0 or core_start - start >= margin
        assert core_stop == length or start + edge - core_stop >= margin
    assert (covered == 1).all()


def test_margin_must_leave_a_core() -> None:
    with pytest.raises(VoxudaInputError, match="--margin"):
        axis_tiles(100, 32, 16)


def test_window_edges_are_multiples_of_8_and_as_small_as_the_window_count_allows() -> None:
    # 300 needs 3 windows of at most 128 either way: 3 x 104 compute less than 3 x 128
    assert window_edges((40, 300, 1000), 128, 8, 32) == (40, 104, 128)
    assert window_edges((37, 64, 64), 128, 8, 32) == (40, 64, 64)  # one window over 37 (padded), not two of 32
    assert window_edges((38, 64, 64), 32, 8, 32) == (32, 32, 32)  # --window 32 is kept
    # with a margin of 16, 256 voxels in two windows: 2 x 144 - 32 >= 256
    assert window_edges((256, 256, 256), 192, 8, 32, margin=16) == (144, 144, 144)


def test_plan_tiles_the_volume_once() -> None:
    plan = TilePlan.make((40, 70, 90), 48, 8)
    covered = np.zeros(plan.shape, int)
    for band in plan.rows():
        assert len({(tile.core[0].start, tile.core[0].stop) for tile in band}) == 1  # a band shares its z core
        for tile in band:
            covered[tile.core] += 1
            assert tuple(s.stop - s.start for s in tile.window) == plan.edges
    assert (covered == 1).all()
    assert plan.computed_voxels >= np.prod(plan.shape)


def test_window_caps_take_short_axes_whole_and_share_the_rest() -> None:
    assert window_caps((1000, 1000, 1000), 200**3, 8, 32) == (200, 200, 200)
    # the short axis whole (rounded up to 8), then what it leaves: 272 = sqrt(8e6 / 104) down to a
    # multiple of 8, and the last axis the rest (104 x 272 x 280 <= 200^3)
    assert window_caps((100, 1000, 1000), 200**3, 8, 32) == (104, 272, 280)
    assert window_caps((100, 120, 1000), 200**3, 8, 32) == (104, 120, 640)
    assert window_caps((20, 20, 20), 10**3, 8, 32) == (32, 32, 32)  # never under the model box
    # 1000 in windows of at most 272 with 16 of margin: 5 of 232; at most 280: 4 of 280
    assert window_edges((100, 1000, 1000), (104, 272, 280), 8, 32, margin=16) == (104, 232, 280)
