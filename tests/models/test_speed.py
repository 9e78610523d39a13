"""models/speed.py: the channels-last layout and torch.compile change speed, not results."""

import copy

import numpy as np
import pytest
import torch

from tests.inference.models import random_network
from voxuda_cli.inference.predictor import Predictor
from voxuda_cli.inference.settings import PredictSettings
from voxuda_cli.models import ModelInfo, speed
from voxuda_cli.training.settings import TrainSettings

CPU = torch.device("cpu")


def test_channels_last_network_equals_default_layout() -> None:
    reference = random_network(width=4)
    fast = speed.prepare_network(copy.deepcopy(reference), CPU)
    assert fast.stem[3].weight.is_contiguous(memory_format=torch.channels_last_3d)
    assert not reference.stem[3].weight.is_contiguous(memory_format=torch.channels_last_3d)
    x = torch.randn(2, 1, 32, 32, 32)
    with torch.no_grad():
        np.testing.assert_allclose(fast(x).numpy(), reference(x).numpy(), atol=1e-5)
    # the state dict (model files, checkpoints) keeps its keys and values
    assert fast.state_dict().keys() == reference.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(fast.state_dict().values(), reference.state_dict().values()))


def test_compile_on_and_off_predict_the_same() -> None:
    network = random_network(width=4)
    info = ModelInfo(architecture=network.config, box=(32, 32, 32))
    windows = np.random.default_rng(0).normal(size=(2, 32, 32, 32)).astype(np.float32)
    plain = Predictor.from_network(copy.deepcopy(network), info, PredictSettings(device="cpu"))
    # what Predictor(model file, compile=True) runs: its own network, prepared
    fast = speed.prepare_network(copy.deepcopy(network), CPU, compile=True)
    compiled = Predictor.from_network(fast, info, PredictSettings(device="cpu"))
    expected = plain.predict_windows(windows)
    got = compiled.predict_windows(windows)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert not np.allclose(expected, expected.mean(), atol=1e-3)  # the outputs vary: the comparison means something
    assert fast._compiled_call_impl is not None


def test_predictor_leaves_a_borrowed_network_as_it_is() -> None:
    # from_network gets e.g. the network being trained: converting its layout mid-run would change the run
    network = random_network(width=4)
    Predictor.from_network(network, ModelInfo(architecture=network.config, box=(32, 32, 32)))
    assert not network.stem[3].weight.is_contiguous(memory_format=torch.channels_last_3d)


def test_predictor_prepares_its_own_network(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.inference.models import write_model

    path = write_model(tmp_path / "model.pt", random_network(width=4))
    predictor = Predictor(path, device="cpu")
    assert predictor.network.stem[3].weight.is_contiguous(memory_format=torch.channels_last_3d)


def test_compile_without_a_compiler_runs_eagerly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(speed.shutil, "which", lambda name: None)
    assert not speed.can_compile(CPU)
    network = speed.prepare_network(random_network(width=4), CPU, compile=True)
    assert network._compiled_call_impl is None  # not compiled: plain eager calls
    assert network(torch.zeros(1, 1, 32, 32, 32)).shape == (1, 2, 32, 32, 32)


def test_compile_is_a_setting_that_may_change_on_resume() -> None:
    from voxuda_cli.training.settings import RESUMABLE_CHANGES

    assert TrainSettings().compile is False and PredictSettings().compile is False
    assert "compile" in RESUMABLE_CHANGES


HAS_CPU_BF16 = speed.cpu_has_bf16()


def test_amp_dtype_per_device(monkeypatch: pytest.MonkeyPatch) -> None:
    assert speed.autocast_dtype(False, CPU) is None
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    assert speed.autocast_dtype(True, CPU) is None  # no oneDNN bf16: float32, with a warning
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    monkeypatch.setattr(speed, "cpu_flags", lambda: {"avx512_bf16"})
    assert speed.autocast_dtype(True, CPU) is None  # AVX512-BF16 without AMX: NaN steps seen, float32
    monkeypatch.setattr(speed, "cpu_flags", lambda: {"avx512_bf16", "amx_bf16"})
    assert speed.autocast_dtype(True, CPU) is torch.bfloat16


@pytest.mark.skipif(not HAS_CPU_BF16, reason="this CPU has no AMX")
def test_cpu_bf16_training_step_is_close_to_float32_and_deterministic() -> None:
    from voxuda_cli.training.data import Batch
    from voxuda_cli.training.loop import Trainer

    rng = np.random.default_rng(1)
    masks = torch.from_numpy((rng.random((2, 16, 16, 16)) > 0.7).astype(np.uint8))
    images = masks.float() + torch.from_numpy(rng.normal(0, 0.5, masks.shape).astype(np.float32))
    batch = Batch(images.unsqueeze(1), masks, None, None, None)
    losses = {}
    for amp in (False, True, True):
        torch.manual_seed(0)
        trainer = Trainer(TrainSettings(method="source-only", width=8, amp=amp, device="cpu"), CPU)
        losses.setdefault(amp, []).append([trainer.step(batch, progress=0.5)["seg"] for _ in range(3)])
    reference, (bf16, again) = losses[False][0], losses[True]
    assert bf16 == again  # deterministic on CPU, as float32 is
    np.testing.assert_allclose(bf16, reference, rtol=3e-2)
    assert bf16 != reference  # it did run in bf16


@pytest.mark.skipif(not HAS_CPU_BF16, reason="this CPU has no AMX")
def test_cpu_bf16_predictions_are_close_to_float32() -> None:
    network = random_network(width=4)
    info = ModelInfo(architecture=network.config, box=(32, 32, 32))
    windows = np.random.default_rng(0).normal(size=(2, 32, 32, 32)).astype(np.float32)
    plain = Predictor.from_network(network, info, PredictSettings(device="cpu")).predict_windows(windows)
    bf16 = Predictor.from_network(network, info, PredictSettings(device="cpu", amp=True)).predict_windows(windows)
    assert bf16.dtype == np.float32
    np.testing.assert_allclose(bf16, plain, atol=2e-2)
    assert not np.array_equal(bf16, plain)
