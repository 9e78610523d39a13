import math

import pytest

from voxuda_cli.errors import VoxudaInputError
from voxuda_cli.training.methods.vox_uda import pl_warmup_factor
from voxuda_cli.training.settings import TrainSettings


def test_warmup_ramp_follows_mean_teacher() -> None:
    assert pl_warmup_factor(0.0, 0.0) == 1.0  # off: METHOD.md's full weight from the start
    assert pl_warmup_factor(10.0, 0.0) == pytest.approx(math.exp(-5.0))
    assert pl_warmup_factor(10.0, 5.0) == pytest.approx(math.exp(-5.0 * 0.25))
    assert pl_warmup_factor(10.0, 10.0) == 1.0
    assert pl_warmup_factor(10.0, None) == 1.0
    values = [pl_warmup_factor(4.0, e / 10) for e in range(41)]
    assert values == sorted(values)


def test_negative_warmup_refused() -> None:
    with pytest.raises(VoxudaInputError, match="--pl-warmup"):
        TrainSettings(pl_warmup=-1.0)
