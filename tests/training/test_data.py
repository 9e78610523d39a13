"""Training data: checks on the inputs, per-volume z-scoring, seeded batches and process shards."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.training.datasets import write_blobs
from voxuda_cli.errors import VoxudaInputError
from voxuda_cli.training.data import (
    EpochBatches,
    EpochPlan,
    TrainingData,
    VolumeSet,
    check_box,
    load_training_data,
    random_flips,
)
from voxuda_cli.training.settings import TrainSettings


def test_box_must_be_a_multiple_of_eight() -> None:
    check_box((32, 32, 32), "x")
    check_box((16, 24, 40), "x")
    with pytest.raises(VoxudaInputError, match="multiple of 8"):
        check_box((30, 32, 32), "src.h5")


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    return {
        "src": write_blobs(tmp_path / "src.h5", n=3, seed=1),
        "tgt": write_blobs(tmp_path / "tgt.h5", n=3, noise=1.0, seed=2, masks=False),
        "tgt_11A": write_blobs(tmp_path / "tgt11.h5", n=3, seed=3, voxel_size=11.0, masks=False),
        "tgt_24": write_blobs(tmp_path / "tgt24.h5", n=2, seed=4, box=24, masks=False),
        "tgt_30": write_blobs(tmp_path / "src30.h5", n=2, seed=4, box=30),
    }


def test_vox_uda_data(files: dict[str, Path]) -> None:
    data = load_training_data(
        TrainSettings(src=(files["src"],), tgt=(files["tgt"],), method="vox-uda", teacher_input="denoised")
    )
    assert data.box == (32, 32, 32) and data.voxel_size == 10.0
    assert len(data.labelled) == 3 and data.labelled.masks is not None
    assert data.target is not None and data.denoised_target is not None
    assert data.denoised_target.shape == data.target.images.shape
    assert data.denoised_target.std() < data.target.images.std()  # the IBF smooths
    assert data.noise_sigma is not None and 0 < data.noise_sigma < 1
    baseline = load_training_data(TrainSettings(src=(files["src"],), tgt=(files["tgt"],), method="source-only"))
    assert baseline.target is None and baseline.noise_sigma is None


def test_noise_file_replaces_the_estimate(files: dict[str, Path], tmp_path: Path) -> None:
    from voxuda_cli.filters.noise import NoiseEstimate

    path = NoiseEstimate(sigma=0.7, variance=0.49, keep_rate=0.244, n_sampled=1).save(tmp_path / "noise.json")
    settings = TrainSettings(
        src=(files["src"],), tgt=(files["tgt"],), noise=path, denoiser="none", teacher_input="denoised"
    )
    data = load_training_data(settings)
    assert data.noise_sigma == pytest.approx(0.7)
    torch.testing.assert_close(data.denoised_target, data.target.images)  # type: ignore[union-attr]


def test_source_without_masks_is_refused(files: dict[str, Path]) -> None:
    with pytest.raises(VoxudaInputError, match="no /masks"):
        load_training_data(TrainSettings(src=(files["tgt"],), tgt=(files["tgt"],)))
    with pytest.raises(VoxudaInputError, match="supervised"):
        load_training_data(TrainSettings(tgt=(files["tgt"],), method="supervised"))


def test_box_problems_are_refused(files: dict[str, Path]) -> None:
    with pytest.raises(VoxudaInputError, match="multiple of 8"):
        load_training_data(TrainSettings(src=(files["tgt_30"],), method="source-only"))
    with pytest.raises(VoxudaInputError, match="differs from the labelled set"):
        load_training_data(TrainSettings(src=(files["src"],), tgt=(files["tgt_24"],), method="dann"))


def test_voxel_size_mismatch_warns_or_refuses_with_strict(files: dict[str, Path]) -> None:
    settings = TrainSettings(src=(files["src"],), tgt=(files["tgt_11A"],), method="dann")
    data = load_training_data(settings)
    assert len(data.warnings) == 1 and "voxel size 11.000" in data.warnings[0]
    with pytest.raises(VoxudaInputError, match="--strict"):
        load_training_data(settings.replace(strict=True))


def _tiny_data(n: int = 5, sigma: float | None = 0.5) -> TrainingData:
    masks = torch.zeros(n, 8, 8, 8, dtype=torch.uint8)
    for i in range(n):
        masks[i, : i + 1, : 2 * i + 1, 1:3] = 1  # asymmetric, so flips show
    images = masks.float()
    target = VolumeSet(images=-torch.arange(3.0)[:, None, None, None].expand(3, 8, 8, 8).clone(), masks=None, names=[])
    return TrainingData(
        labelled=VolumeSet(images=images, masks=masks, names=[str(i) for i in range(n)]),
        target=target,
        denoised_target=target.images * 10,
        validation=None,
        box=(8, 8, 8),
        voxel_size=1.0,
        noise_sigma=sigma,
        warnings=[],
    )


def test_epoch_plan_shards_cover_every_sample_with_equal_steps() -> None:
    shards = [EpochPlan.build(7, 2, seed=3, epoch=1, rank=r, world=3) for r in range(3)]
    assert {len(s.order) for s in shards} == {3} and {s.steps for s in shards} == {2}
    assert set().union(*(s.order for s in shards)) == set(range(7))
    assert EpochPlan.build(7, 2, 3, 1) == EpochPlan.build(7, 2, 3, 1)
    assert EpochPlan.build(7, 2, 3, 1).order != EpochPlan.build(7, 2, 3, 2).order
    single = EpochPlan.build(5, 2, 0, 0)
    assert sorted(single.order) == list(range(5)) and single.steps == 3 and len(single.indices(2)) == 1


def test_batches_are_seeded_flipped_consistently_and_noised() -> None:
    data = _tiny_data()
    settings = TrainSettings(seed=5, source_view="ngm")
    plan = EpochPlan.build(5, 4, seed=5, epoch=0)
    batches = EpochBatches(data, settings, plan, epoch=0)
    first, again = batches[0], batches[0]
    for a, b in zip(first, again):
        torch.testing.assert_close(a, b)
    assert first.images.shape == (4, 1, 8, 8, 8) and first.masks.shape == (4, 8, 8, 8)
    torch.testing.assert_close(first.images[:, 0], first.masks.float())  # image and mask flipped alike
    noise = first.noisy - first.images
    assert 0.4 < float(noise.std()) < 0.6
    # The teacher's denoised input is the same target samples as the student's.
    torch.testing.assert_close(first.denoised, first.target * 10)
    other_epoch = EpochBatches(data, settings, plan, epoch=1)[0]
    assert not torch.equal(other_epoch.noisy, first.noisy)


def test_flips_happen() -> None:
    masks = torch.zeros(64, 4, 4, 4, dtype=torch.uint8)
    masks[:, 0, 0, 0] = 1
    _, flipped = random_flips(masks.float(), masks, torch.Generator().manual_seed(0))
    corners = {tuple(torch.nonzero(m)[0].tolist()) for m in flipped}
    assert len(corners) == 8  # every combination of the three axis flips occurs


def test_loader_workers_change_nothing() -> None:
    data = _tiny_data()
    batches = EpochBatches(data, TrainSettings(seed=1), EpochPlan.build(5, 2, 1, 0), epoch=0)
    direct = [batches[i] for i in range(len(batches))]
    loader = torch.utils.data.DataLoader(batches, batch_size=None, num_workers=1)
    for a, b in zip(direct, loader):
        torch.testing.assert_close(a.noisy, b.noisy)
        torch.testing.assert_close(a.target, b.target)


def test_validation_without_masks_is_kept_without_masks(files: dict[str, Path]) -> None:
    data = load_training_data(TrainSettings(src=(files["src"],), val=(files["tgt"],), method="source-only"))
    assert data.validation is not None and data.validation.masks is None


def test_a_target_at_another_voxel_size_is_resampled_to_the_source(tmp_path: Path) -> None:
    import numpy as np

    from tests.inference.models import ball
    from voxuda_cli.io.dataset import Dataset, write_dataset

    source = write_blobs(tmp_path / "src.h5", n=2, seed=1)  # 10 A
    radius_angstrom = 60.0
    images = np.stack([ball((32,) * 3, (16, 16, 16), radius_angstrom / 13.5)]).astype(np.float32)
    write_dataset(tmp_path / "t.h5", Dataset(images=images, names=["t"], voxel_size=13.5, kind="target"))
    data = load_training_data(TrainSettings(src=(source,), tgt=(tmp_path / "t.h5",), method="dann"))
    assert data.target is not None and tuple(data.target.images.shape) == (1, 32, 32, 32)
    image = data.target.images[0]
    inside = int((image > (image.max() + image.min()) / 2).sum())  # the ball edge is half-way after resampling
    expected = 4 / 3 * np.pi * (radius_angstrom / 10.0) ** 3  # the ball, counted in 10 A voxels
    assert abs(inside - expected) < 0.15 * expected, (inside, expected)
    assert "resampled" in data.warnings[0]
    lost = Dataset(images=images, names=["t"], voxel_size=1.0, kind="target")
    write_dataset(tmp_path / "lost.h5", lost)
    with pytest.raises(VoxudaInputError, match="--input-voxel-size"):
        load_training_data(TrainSettings(src=(source,), tgt=(tmp_path / "lost.h5",), method="dann"))


def test_the_spectral_source_view_is_the_source_styled_after_the_batch_target() -> None:
    data = _tiny_data()
    plan = EpochPlan.build(5, 4, seed=5, epoch=0)
    spectral = EpochBatches(data, TrainSettings(seed=5, source_view="spectral", spectral_strength=1.0), plan, 0)[0]
    assert spectral.noisy.shape == spectral.images.shape
    assert not torch.allclose(spectral.noisy, spectral.images)
    dims = (-3, -2, -1)
    torch.testing.assert_close(spectral.noisy.mean(dim=dims), torch.zeros(4, 1), atol=1e-3, rtol=0)
    none = EpochBatches(data, TrainSettings(seed=5, source_view="spectral", spectral_strength=0.0), plan, 0)[0]
    standardised = (none.images - none.images.mean(dim=dims, keepdim=True)) / none.images.std(
        dim=dims, keepdim=True, correction=0
    )
    torch.testing.assert_close(none.noisy, standardised, atol=1e-4, rtol=1e-4)  # strength 0: the source itself
    both = EpochBatches(data, TrainSettings(seed=5, source_view="both", spectral_strength=0.0), plan, 0)[0]
    assert not torch.allclose(both.noisy, none.noisy, atol=1e-2)  # the NGM's noise comes first


def test_source_view_auto_uses_the_spectral_view_only_where_the_source_does_not_span_the_target() -> None:
    from voxuda_cli.training.data import resolve_source_view

    generator = torch.Generator().manual_seed(0)
    white = torch.randn(48, 16, 16, 16, generator=generator)
    coloured = torch.nn.functional.avg_pool3d(torch.randn(48, 1, 18, 18, 18, generator=generator), 3, 1)[:, 0]

    def volume_set(images: torch.Tensor) -> VolumeSet:
        return VolumeSet(images=images, masks=None, names=[str(i) for i in range(len(images))])

    auto = TrainSettings(source_view="auto")
    view, coverage = resolve_source_view(auto, volume_set(white), volume_set(coloured))
    assert view == "spectral" and coverage is not None and coverage < 0.5
    view, coverage = resolve_source_view(auto, volume_set(torch.cat([white, coloured])), volume_set(coloured))
    assert view == "none" and coverage is not None and coverage >= 0.5
    explicit = TrainSettings(source_view="ngm", bn_statistics="mixed")
    assert resolve_source_view(explicit, volume_set(white), volume_set(coloured)) == ("ngm", None)
    assert resolve_source_view(auto, volume_set(white), None) == ("none", None)
    assert TrainSettings().source_view == "auto" and TrainSettings(recipe="paper").source_view == "ngm"


def test_bn_statistics_auto_follows_the_spectral_coverage() -> None:
    from voxuda_cli.training.data import resolve_bn_statistics

    auto = TrainSettings()
    assert auto.bn_statistics == "auto" and TrainSettings(recipe="paper").bn_statistics == "mixed"
    assert resolve_bn_statistics(auto, 0.9) == "source"
    assert resolve_bn_statistics(auto, 0.2) == "mixed"
    assert resolve_bn_statistics(auto, None) == "mixed"  # nothing measured: keep the mixed batch
    assert resolve_bn_statistics(TrainSettings(bn_statistics="source"), 0.2) == "source"
    assert resolve_bn_statistics(TrainSettings(bn_statistics="mixed"), 0.9) == "mixed"
    with pytest.raises(VoxudaInputError, match="--bn-statistics"):
        TrainSettings(bn_statistics="target")


def test_batches_say_when_the_source_gives_the_statistics() -> None:
    data = _tiny_data()
    plan = EpochPlan.build(5, 4, seed=5, epoch=0)
    assert not EpochBatches(data, TrainSettings(seed=5), plan, 0)[0].source_statistics
    data.bn_statistics = "source"
    batch = EpochBatches(data, TrainSettings(seed=5), plan, 0)[0]
    assert batch.source_statistics and batch.to(torch.device("cpu")).source_statistics


def test_source_view_none_is_the_source_itself() -> None:
    data = _tiny_data()
    plan = EpochPlan.build(5, 4, seed=5, epoch=0)
    batch = EpochBatches(data, TrainSettings(seed=5, source_view="none"), plan, 0)[0]
    assert batch.noisy is None  # x_s' = x_s: the method runs x_s once
    data.source_view = "spectral"  # auto follows what the data resolved
    styled = EpochBatches(data, TrainSettings(seed=5, source_view="auto"), plan, 0)[0]
    assert not torch.allclose(styled.noisy, styled.images)
