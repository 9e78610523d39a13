import numpy as np

from voxuda_cli.resample import fourier_resample, resize_mask


def test_fourier_resample_keeps_a_smooth_signal() -> None:
    axis = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    signal = np.sin(axis)[:, None, None] * np.cos(axis)[None, :, None] * np.ones((1, 1, 64))
    down = fourier_resample(signal.astype(np.float32), (32, 32, 32))
    axis32 = np.linspace(0, 2 * np.pi, 32, endpoint=False)
    expected = np.sin(axis32)[:, None, None] * np.cos(axis32)[None, :, None] * np.ones((1, 1, 32))
    np.testing.assert_allclose(down, expected, atol=1e-5)


def test_resize_mask_keeps_a_ball_a_ball() -> None:
    grid = np.indices((64,) * 3) - 31.5
    ball = (np.sqrt((grid**2).sum(0)) < 20).astype(np.uint8)
    small = resize_mask(ball, (32, 32, 32))
    assert small.dtype == np.uint8 and small.shape == (32, 32, 32)
    assert abs(small.sum() * 8 / ball.sum() - 1) < 0.05
