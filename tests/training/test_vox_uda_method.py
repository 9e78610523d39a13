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


def test_without_a_second_view_the_source_runs_once_and_l_con_is_zero() -> None:
    import torch

    from voxuda_cli.models import VoxResNet, VoxResNetConfig
    from voxuda_cli.training.data import Batch
    from voxuda_cli.training.losses import segmentation_loss
    from voxuda_cli.training.methods import Position, StepOutputs
    from voxuda_cli.training.methods.vox_uda import VoxUda

    torch.manual_seed(0)
    images, target = torch.randn(2, 1, 16, 16, 16), torch.randn(2, 1, 16, 16, 16)
    masks = (images[:, 0] > 1).long()
    method = VoxUda(TrainSettings())
    model = VoxResNet(VoxResNetConfig(width=4))
    for noisy, samples in ((None, 2), (images.clone(), 4)):
        batch = Batch(images, masks, noisy, target, None, source_statistics=True)
        inputs = method.inputs(batch)
        assert inputs.shape[0] == samples + 2 and method.statistics_samples(batch) == samples
        out = model.forward_features(inputs)
        domain = torch.zeros(inputs.shape[0])
        losses = method.losses(StepOutputs(out.logits, out.features, domain, None, Position(0.0, 0.0)), batch)
        torch.testing.assert_close(losses["seg"], segmentation_loss(out.logits[:2], masks))
        assert float(losses["con"].detach()) == pytest.approx(0.0, abs=1e-5)  # x_s' = x_s either way
