"""The plug-in points are real: a method and a denoiser registered from outside the package train."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.training.datasets import write_blobs
from voxuda_cli.filters import denoisers
from voxuda_cli.filters.denoisers import Denoiser, register_denoiser
from voxuda_cli.training import Method, TrainSettings, register_method, train
from voxuda_cli.training import methods as method_registry
from voxuda_cli.training.losses import segmentation_loss


class Halve(Denoiser):
    """A toy denoiser: shrinks the z-scored target towards 0 (counts its calls)."""

    name = "halve"
    calls = 0

    def apply(self, volumes: torch.Tensor) -> torch.Tensor:
        Halve.calls += 1
        return 0.5 * volumes


class Agreement(Method):
    """A toy method: L_seg on the source plus the student agreeing with its EMA teacher on the target."""

    name = "agreement"
    uses_target = True
    uses_denoised_target = True
    has_teacher = True
    loss_terms = ("seg", "agree")

    def __init__(self, settings: TrainSettings) -> None:
        super().__init__(settings)
        self.steps_seen = 0

    def inputs(self, batch: Any) -> torch.Tensor:
        return torch.cat([batch.images, batch.target])

    def losses(self, step: Any, batch: Any) -> dict[str, torch.Tensor]:
        n = batch.images.shape[0]
        target_probability = torch.softmax(step.logits[n:].float(), dim=1)
        step.figures["agree_steps"] = float(self.steps_seen)
        return {
            "seg": segmentation_loss(step.logits[:n], batch.masks),
            "agree": (target_probability - torch.softmax(step.teacher_logits.float(), dim=1)).square().mean(),
        }

    def before_step(self, trainer: Any, position: float | None) -> None:
        self.steps_seen += 1

    def state_dict(self) -> dict[str, Any]:
        return {"steps_seen": self.steps_seen}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps_seen = int(state.get("steps_seen", 0))


@pytest.fixture
def plugins() -> Iterator[None]:
    register_method(Agreement)
    register_denoiser("halve", lambda params: Halve())
    yield
    method_registry._REGISTRY.pop("agreement")
    denoisers._REGISTRY.pop("halve")


def test_a_toy_method_and_denoiser_train_resume_and_save(plugins: None, tmp_path: Path) -> None:
    from voxuda_cli.models import load_model

    src = write_blobs(tmp_path / "src.h5", n=4, noise=0.5, seed=1)
    tgt = write_blobs(tmp_path / "tgt.h5", n=3, noise=1.0, seed=2, masks=False)
    settings = TrainSettings(
        src=(src,), tgt=(tgt,), method="agreement", denoiser="halve", width=8, batch_size=2, epochs=1, threads=1
    )
    Halve.calls = 0
    summary = train(settings, tmp_path / "run")
    assert Halve.calls == 1  # the target is denoised once per run, by the plug-in
    assert set(summary["final"]) == {"loss", "seg", "agree"} and all(
        math.isfinite(v) for v in summary["final"].values()
    )
    record = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert record["agree_steps"] == pytest.approx(1.5)  # before_step ran before each of the 2 steps
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert state["method"] == {"steps_seen": 2} and state["discriminator"] is None
    _, info = load_model(tmp_path / "run")
    assert info.method == "agreement" and info.weights == ("teacher", "student") and info.denoiser == "halve"
    train(settings.replace(epochs=2), tmp_path / "run", resume=True)
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert state["method"] == {"steps_seen": 4}  # the method's own state came back from the checkpoint


def test_an_unknown_method_lists_the_registry() -> None:
    from voxuda_cli.errors import VoxudaInputError

    with pytest.raises(VoxudaInputError, match="--method mean-teacher: unknown method; use one of vox-uda"):
        TrainSettings(method="mean-teacher")
