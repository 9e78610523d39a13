"""The paper's baselines (asc, le-uda, pdam, mapseg): each one's defining mechanism on tiny inputs, exact resume."""

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
    student_target = flip_each(teacher, method.flips)  # a student equivariant with the teacher
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
    masks = flip_each(batch.masks.unsqueeze(1), method.flips[:2]).squeeze(1).long()
    perfect = torch.nn.functional.one_hot(masks, 2).permute(0, 4, 1, 2, 3).float() * 40 - 20
    logits = torch.cat([perfect, flip_each(teacher, method.flips[2:])])
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


@pytest.mark.parametrize("method", ["asc", "le-uda", "pdam", "mapseg"])
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
    for part in ("student", "teacher", "discriminator"):
        for key, value in (whole[part] or {}).items():
            assert torch.equal(value, split[part][key]), f"{part}.{key}"
    for name, module in whole["method"].items():  # the method's own networks (pdam, mapseg)
        if name in ("translator", "critic", "decoder"):
            for key, value in module.items():
                assert torch.equal(value, split["method"][name][key]), f"{name}.{key}"


class _Trainer:
    """What attach() and prepare() read of a Trainer."""

    def __init__(self, steps_done: int = 0) -> None:
        from voxuda_cli.training.distributed import DistributedContext

        self.device = torch.device("cpu")
        self.context = DistributedContext()
        self.steps_done = steps_done


def test_pdam_translator_starts_as_the_identity_and_learns_against_a_critic_of_target_volumes() -> None:
    torch.manual_seed(0)
    method, batch = _method("pdam"), _batch()
    method.attach(_Trainer())  # type: ignore[arg-type]
    assert torch.equal(method.translator(batch.images), batch.images)
    critic_before = {k: v.clone() for k, v in method.critic.state_dict().items()}
    for _ in range(3):
        method.prepare(_Trainer(), batch, Position(1.0, 1.0))  # type: ignore[arg-type]
    inputs = method.inputs(batch)
    assert not torch.equal(inputs[:2], batch.images)  # the student sees translated sources ...
    assert torch.equal(inputs[2:], batch.target)  # ... and the raw target
    assert (inputs[:2] - batch.images).abs().mean() < 0.5  # the L1 term keeps them near their source
    assert any(not torch.equal(v, critic_before[k]) for k, v in method.critic.state_dict().items())
    assert {"critic", "translator_adv", "translator_l1"} <= method._figures.keys()


def test_pdam_task_weights_favour_target_like_sources_and_average_one() -> None:
    from voxuda_cli.training.methods.pdam import task_weights

    weights = task_weights(torch.tensor([-3.0, 0.0, 3.0], requires_grad=True))
    assert not weights.requires_grad and torch.isclose(weights.mean(), torch.tensor(1.0))
    assert weights[0] < weights[1] < weights[2]


def test_mapseg_masks_the_students_input_and_its_reconstruction_loss_falls() -> None:
    from voxuda_cli.models import VoxResNet, VoxResNetConfig

    torch.manual_seed(0)
    method, batch = _method("mapseg", width=4, burn_in=0.5), _batch()
    method.attach(_Trainer())  # type: ignore[arg-type]
    student = VoxResNet(VoxResNetConfig(width=4))
    optimizer = torch.optim.Adam(student.parameters(), lr=3e-3)
    losses = []
    for step in range(15):
        method.before_step(_Trainer(step), Position(0.0, 0.1))  # type: ignore[arg-type]
        inputs = method.inputs(batch)
        masks = method._masks
        assert masks is not None and abs(masks.float().mean().item() - 0.7) < 0.02
        assert (inputs[masks] == 0).all()  # masked cubes are hidden from the student
        visible = torch.cat([batch.images, batch.target])[~masks]  # type: ignore[list-item]
        assert torch.equal(inputs[~masks], visible)
        output = student.forward_features(inputs)
        step_outputs = StepOutputs(output.logits, output.features, None, None, Position(0.0, 0.1))
        loss = method.losses(step_outputs, batch)
        assert method.weights(Position(0.0, 0.1)) == {"seg": 0.0, "mae": 1.0, "mpl": 0.0}
        for opt in (optimizer, *method.optimizers()):
            opt.zero_grad()
        loss["mae"].backward()
        for opt in (optimizer, *method.optimizers()):
            opt.step()
        losses.append(float(loss["mae"].detach()))
    assert losses[-1] < 0.8 * losses[0]
    # after the burn-in: the target alone is masked, the source is seen whole
    method.before_step(_Trainer(99), Position(0.0, 0.9))  # type: ignore[arg-type]
    inputs = method.inputs(batch)
    assert torch.equal(inputs[:2], batch.images) and (inputs[2:][method._masks] == 0).all()
    assert method.weights(Position(0.0, 0.9))["seg"] == 1.0 and method.teacher_ready(Position(0.0, 0.9))


def test_mapseg_reuses_an_earlier_runs_mae_stage(data: dict[str, Path], tmp_path: Path) -> None:
    """--pretrained: the student starts from a run stopped at its burn-in (its MAE stage), and
    this run has no MAE stage of its own (L_mae is 0 throughout, its burn-in trains L_seg)."""
    import json

    from voxuda_cli.errors import VoxudaInputError
    from voxuda_cli.models import VoxResNet, VoxResNetConfig

    threads = torch.get_num_threads()
    settings = TrainSettings(
        src=(data["src"],), tgt=(data["tgt"],), method="mapseg", width=4, batch_size=2, epochs=1, ramp_epochs=2,
        threads=1, seed=0, burn_in=0.5,
    )  # fmt: skip
    train(settings, tmp_path / "mae")  # epoch 1 of 2: all burn-in, the MAE stage alone
    mae = torch.load(tmp_path / "mae" / "checkpoint.pt", weights_only=True)["student"]
    reused = settings.replace(epochs=2, pretrained=tmp_path / "mae")
    trainer = _Trainer()
    trainer.student = VoxResNet(VoxResNetConfig(width=4))  # type: ignore[attr-defined]
    get_method("mapseg")(reused).attach(trainer)  # type: ignore[arg-type]
    assert all(torch.equal(value, mae[key]) for key, value in trainer.student.state_dict().items())  # type: ignore[attr-defined]
    train(reused, tmp_path / "mpl")
    torch.set_num_threads(threads)
    rows = [json.loads(line) for line in (tmp_path / "mpl" / "metrics.jsonl").read_text().splitlines()]
    assert all(row["mae"] == 0 for row in rows) and rows[0]["seg"] > 0
    with pytest.raises(VoxudaInputError, match="differs"):
        train(reused.replace(width=8), tmp_path / "wide")
    with pytest.raises(VoxudaInputError, match="mapseg"):
        TrainSettings(method="asc", pretrained=tmp_path / "mae").validate()
    with pytest.raises(VoxudaInputError, match="burn-in"):
        TrainSettings(method="mapseg", pretrained=tmp_path / "mae", burn_in=0.0).validate()
