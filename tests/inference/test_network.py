import torch

from voxuda_cli.inference.network import foreground_probability


def test_a_foreground_margin_gives_the_two_class_softmax() -> None:
    logits = torch.randn(2, 2, 3, 4, 5) * 4
    expected = torch.softmax(logits, dim=1)[:, 1]
    torch.testing.assert_close(foreground_probability(logits), expected)
    torch.testing.assert_close(foreground_probability(logits[:, 1:] - logits[:, :1]), expected)
