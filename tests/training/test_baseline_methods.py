"""The paper's baselines (asc, le-uda): each one's defining mechanism on tiny inputs, and exact resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.training.datasets import write_blobs
from voxuda_cli.filters.spectral import mix_amplitudes
from voxuda_cli.training import TrainSettings, train
from voxuda_cli.training.data import Batch
from voxuda_cli.training.methods import Position, StepOutputs, get_method
from voxuda_cli.training.perturbations import flip_each

DIMS = (-3, -2, -1)


def _batch(n: int = 2, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(n, 1, 16, 16, 16, generator=g)
    masks = (torch.rand(n, 16, 16, 16, generator=g) > 0.5).to(torch.uint8)
    target = torch.randn(n, 1, 16, 16, 16, generator=g) * 2
    return Batch(images, masks, None, target, None)


def _method(name: str, **settings: object):  # type: ignore[no-untyped-def]
    return get_method(name)(TrainSettings(method=name, **settings))  # type: ignore[arg-type]


class _Steps:
    steps_done = 5


def test_the_appearance_view_keeps_the_source_phases_and_takes_the_targets_low_amplitudes() -> None:
    batch = _batch()
    source, target = batch.images, batch.target
    assert target is not None
    view = mix_amplitudes(source, target, 1.0, band=0.5)
    spectra = [torch.fft.rfftn(v, dim=DIMS) for v in (source, target, view)]
    # the phases are the source's everywhere (the structure, hence the mask, is kept)
    phase_error = torch.angle(spectra[2] * spectra[0].conj()).abs()
    phase_error[..., 0, 0, 0] = 0  # the mean, which the view's z-score sets to 0
    assert phase_error[spectra[0].abs() > 1e-3].max() < 1e-3
    # up to the z-score's scale, low frequencies carry the target's amplitude, high ones the source's
    ratio_target = spectra[2].abs() / spectra[1].abs().clamp_min(1e-6)
    ratio_source = spectra[2].abs() / spectra[0].abs().clamp_min(1e-6)
    low = (slice(None), slice(None), slice(1, 3), slice(1, 3), slice(1, 3))
    high = (slice(None), slice(None), slice(7, 9), slice(7, 9), slice(7, 9))
    for sample in range(2):
        lows, highs = ratio_target[low][sample], ratio_source[high][sample]
        assert lows.std() / lows.mean() < 1e-3 and highs.std() / highs.mean() < 1e-3


def test_asc_structure_consistency_compares_the_students_flipped_view_with_the_teacher_flipped_alike() -> None:
    method, batch = _method("asc"), _batch()
    method.before_step(_Steps(), Position(1.0, 1.0))  # type: ignore[arg-type]
    inputs = method.inputs(batch)
    assert inputs.shape[0] == 3 * 2
    assert torch.equal(inputs[:2], batch.images)  # x_s untouched
    teacher = torch.randn(2, 2, 16, 16, 16).log_softmax(1)
    student_target = flip_each(teacher, method._flips)  # a student equivariant with the teacher
    logits = torch.cat([torch.randn(2, 2, 16, 16, 16), torch.randn(2, 2, 16, 16, 16), student_target])
    features = (torch.zeros(1),) * 4
    losses = method.losses(StepOutputs(logits, features, None, teacher, Position(1.0, 1.0)), batch)  # type: ignore[arg-type]
    assert losses["struct"] < 1e-10 and losses["app"] > 0
    assert method.teacher_views(batch)[0] is batch.target


def test_asc_structure_term_waits_for_the_burn_in() -> None:
    method = _method("asc", burn_in=0.3)
    assert method.weights(Position(0.0, 0.1))["struct"] == 0 and not method.teacher_ready(Position(0.0, 0.1))
    assert method.weights(Position(0.0, 0.9))["struct"] > 0 and method.teacher_ready(Position(0.0, 0.9))


def test_le_uda_discriminator_sees_source_then_target_and_the_teacher_both_domains_clean() -> None:
    method, batch = _method("le-uda"), _batch()
    method.before_step(_Steps(), Position(1.0, 1.0))  # type: ignore[arg-type]
    inputs = method.inputs(batch)
    clean = torch.cat([batch.images, batch.target])  # type: ignore[list-item]
    assert inputs.shape == clean.shape and not torch.equal(inputs, clean)
    (view,) = method.teacher_views(batch)
    assert torch.equal(view, clean)
    # a student that is the teacher, flipped like its inputs: no consistency loss; the masks follow the flips
    teacher = torch.randn(4, 2, 16, 16, 16).log_softmax(1)
    masks = flip_each(batch.masks.unsqueeze(1), method._flips[:2]).squeeze(1).long()
    perfect = torch.nn.functional.one_hot(masks, 2).permute(0, 4, 1, 2, 3).float() * 40 - 20
    logits = torch.cat([perfect, flip_each(teacher, method._flips[2:])])
    domain = torch.tensor([-9.0, -9.0, 9.0, 9.0])
    step = StepOutputs(logits, (torch.zeros(1),) * 4, domain, teacher, Position(1.0, 1.0))  # type: ignore[arg-type]
    losses = method.losses(step, batch)
    assert losses["dis"] < 1e-3  # the discriminator's labels: source first, then target
    assert losses["seg"] < 1e-3  # the flipped masks, not the raw ones


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("baselines")
    return {
        "src": write_blobs(folder / "src.h5", n=4, noise=0.5, seed=1),
        "tgt": write_blobs(folder / "tgt.h5", n=3, noise=1.0, seed=2, masks=False),
    }


@pytest.mark.parametrize("method", ["asc", "le-uda"])
def test_a_baseline_resumes_exactly(method: str, data: dict[str, Path], tmp_path: Path) -> None:
    threads = torch.get_num_threads()
    settings = TrainSettings(
        src=(data["src"],), tgt=(data["tgt"],), method=method, width=4, batch_size=2, epochs=3, ramp_epochs=3,
        threads=1, seed=0, burn_in=0.2,
    )  # fmt: skip
    train(settings, tmp_path / "whole")
    train(settings.replace(epochs=2), tmp_path / "split")
    train(settings, tmp_path / "split", resume=True)
    torch.set_num_threads(threads)
    whole, split = (torch.load(tmp_path / r / "checkpoint.pt", weights_only=True) for r in ("whole", "split"))
    for part in ("student", "teacher"):
        for key, value in whole[part].items():
            assert torch.equal(value, split[part][key]), f"{part}.{key}"
