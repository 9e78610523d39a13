"""The training loop: every method trains, the run directory, exact resume (also after SIGKILL), the teacher."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tomllib
import torch

from tests.training.datasets import snapshot, write_blobs
from voxuda_cli.errors import VoxudaInputError
from voxuda_cli.training import Trainer, TrainSettings, get_method, method_names, train
from voxuda_cli.training.methods import Position

RUN_FILES = ("config.toml", "model.pt", "checkpoint.pt", "metrics.jsonl", "curves.png")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("data")
    return {
        "src": write_blobs(folder / "src.h5", n=4, noise=0.5, seed=1),
        "tgt": write_blobs(folder / "tgt.h5", n=3, noise=1.0, seed=2, masks=False),
        "val": write_blobs(folder / "val.h5", n=2, noise=1.0, seed=3),
    }


@pytest.fixture(autouse=True)
def keep_torch_threads():  # type: ignore[no-untyped-def]
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def tiny(files: dict[str, Path], **changes: object) -> TrainSettings:
    values: dict[str, object] = {
        "src": (files["src"],),
        "tgt": (files["tgt"],),
        "width": 8,
        "batch_size": 2,
        "epochs": 1,
        "threads": 1,
        "seed": 0,
    }
    values.update(changes)
    return TrainSettings(**values)  # type: ignore[arg-type]


def vox_uda_settings(files: dict[str, Path]) -> TrainSettings:
    # ramp_epochs fixed: the reversal ramp must not depend on the --epochs of the first invocation.
    return tiny(files, epochs=3, ramp_epochs=3)


@pytest.fixture(scope="module")
def vox_uda_run(files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three epochs of vox-uda in one go: the reference for the resume tests."""
    threads = torch.get_num_threads()
    run = tmp_path_factory.mktemp("reference") / "run"
    train(vox_uda_settings(files), run)
    torch.set_num_threads(threads)
    return run


def _weights(run: Path) -> dict[str, dict[str, torch.Tensor]]:
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    optimizer = {f"{k}.{n}": v for k, s in state["optimizer"]["state"].items() for n, v in s.items()}
    return {"student": state["student"], "teacher": state["teacher"], "discriminator": state["discriminator"],
            "optimizer": optimizer}  # fmt: skip


def _assert_identical(a: Path, b: Path) -> None:
    left, right = _weights(a), _weights(b)
    for part in left:
        assert left[part].keys() == right[part].keys()
        for key in left[part]:
            assert torch.equal(left[part][key], right[part][key]), f"{part}.{key} differs"


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("method", method_names())
def test_each_method_trains_and_fills_the_run_directory(method: str, files: dict[str, Path], tmp_path: Path) -> None:
    from voxuda_cli.models import load_model

    target = files["val"] if method == "supervised" else files["tgt"]
    run = tmp_path / "run"
    summary = train(tiny(files, method=method, tgt=(target,), val=(files["val"],)), run)
    assert all((run / name).is_file() for name in RUN_FILES)
    (record,) = _records(run)
    for term in ("loss", *get_method(method).loss_terms):
        assert math.isfinite(record[term]), term
    assert set(summary["final"]) == {"loss", *get_method(method).loss_terms}
    assert 0 <= record["val_dice"] <= 1 and record["lr"] == pytest.approx(1e-3) and record["seconds"] > 0
    if method == "vox-uda":
        assert 0 <= record["pl_coverage"] <= 1 and record["noise_sigma"] > 0 and "val_dice_student" in record
    config = tomllib.loads((run / "config.toml").read_text())
    assert config["method"] == method and config["width"] == 8 and config["epochs"] == 1
    model, info = load_model(run)
    assert info.method == method and info.box == (32, 32, 32) and info.voxel_size == 10.0
    assert info.weights == (("teacher", "student") if get_method(method).has_teacher else ("student",))
    assert info.denoiser_params["sigma_r"] == 1.2 and info.settings["width"] == 8


def test_resume_gives_the_same_weights_as_one_run(files: dict[str, Path], vox_uda_run: Path, tmp_path: Path) -> None:
    settings = vox_uda_settings(files)
    run = tmp_path / "run"
    train(settings.replace(epochs=2), run)
    summary = train(settings, run, resume=True)
    assert summary["resumed_from"] == 2 and summary["epochs_run"] == 1
    _assert_identical(run, vox_uda_run)
    drop = ("seconds", "samples_per_s")
    assert [{k: v for k, v in r.items() if k not in drop} for r in _records(run)] == [
        {k: v for k, v in r.items() if k not in drop} for r in _records(vox_uda_run)
    ]


def test_a_killed_run_resumes_from_its_last_checkpoint(
    files: dict[str, Path], vox_uda_run: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    command = [sys.executable, "-m", "voxuda_cli", "train", "--src", str(files["src"]), "--tgt", str(files["tgt"])]
    command += ["-o", str(run), "--width", "8", "--batch-size", "2", "--epochs", "3", "--ramp-epochs", "3"]
    command += ["--threads", "1", "--seed", "0"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (run / "checkpoint.pt").exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    reached = torch.load(run / "checkpoint.pt", weights_only=True)["epoch"]
    assert 1 <= reached < 3
    summary = train(vox_uda_settings(files), run, resume=True)
    assert summary["resumed_from"] == reached
    _assert_identical(run, vox_uda_run)
    assert [r["epoch"] for r in _records(run)] == [1, 2, 3]
    assert not list(run.glob(".*"))  # temporary files of interrupted writes are gone


def test_a_trained_model_loads_in_a_fresh_process(vox_uda_run: Path) -> None:
    script = (
        "import sys, torch; from voxuda_cli.models import load_model\n"
        "model, info = load_model(sys.argv[1])\n"
        "out = model(torch.zeros(1, 1, *info.box))\n"
        "print(tuple(out.shape), info.method, info.weights, info.architecture.width)\n"
    )
    result = subprocess.run([sys.executable, "-c", script, str(vox_uda_run)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "(1, 2, 32, 32, 32) vox-uda ('teacher', 'student') 8"


def test_resume_refusals_leave_the_run_untouched(files: dict[str, Path], vox_uda_run: Path, tmp_path: Path) -> None:
    settings = vox_uda_settings(files)
    before = snapshot(vox_uda_run)
    with pytest.raises(VoxudaInputError, match="lr"):
        train(settings.replace(lr=5e-4), vox_uda_run, resume=True)
    with pytest.raises(VoxudaInputError, match="already at epoch 3"):
        train(settings.replace(epochs=2), vox_uda_run, resume=True)
    with pytest.raises(VoxudaInputError, match="not empty"):
        train(settings, vox_uda_run)
    with pytest.raises(VoxudaInputError, match="checkpoint.pt not found"):
        train(settings, tmp_path / "nothing", resume=True)
    assert snapshot(vox_uda_run) == before
    assert not (tmp_path / "nothing").exists()


def test_overwrite_replaces_only_the_run_files(files: dict[str, Path], tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "notes.txt").write_text("mine")
    (run / "metrics.jsonl").write_text("old\n")
    train(tiny(files, method="source-only"), run, overwrite=True)
    assert (run / "notes.txt").read_text() == "mine"
    assert len(_records(run)) == 1


def test_teacher_is_an_exponential_moving_average(files: dict[str, Path]) -> None:
    trainer = Trainer(tiny(files, ema=0.9, recipe="paper"), torch.device("cpu"))
    assert trainer.teacher is not None
    for name, value in trainer.teacher.state_dict().items():
        assert torch.equal(value, trainer.student.state_dict()[name])
    trainer.start_teacher()  # what the first step does (the paper's recipe has no burn-in)
    teacher_before = {k: v.clone() for k, v in trainer.teacher.state_dict().items()}
    with torch.no_grad():
        for parameter in trainer.student.parameters():
            parameter.add_(1.0)
    trainer.steps_done = 1000  # past the warm-up: the decay is --ema itself
    trainer.update_teacher()
    student = trainer.student.state_dict()
    for name, value in trainer.teacher.state_dict().items():
        if value.is_floating_point():
            torch.testing.assert_close(value, 0.9 * teacher_before[name] + 0.1 * student[name])
        else:
            assert torch.equal(value, student[name])
    assert not any(p.requires_grad for p in trainer.teacher.parameters())


class SignalAfter:
    """Progress that sends ``signum`` to this process after ``steps`` optimisation steps: a
    scheduler's signal at a known step, without a race."""

    def __init__(self, steps: int, signum: int) -> None:
        self.steps, self.signum, self.seen = steps, signum, 0

    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None:
        pass

    def advance(self, running: object) -> None:
        self.seen += 1
        if self.seen == self.steps:
            os.kill(os.getpid(), self.signum)

    def end_epoch(self, record: object) -> None:
        pass


@pytest.mark.parametrize(
    ("steps", "signum", "workers", "where"),
    [
        (3, signal.SIGTERM, 0, "in epoch 2 after step 1"),  # 2 steps per epoch: inside the second
        (3, signal.SIGUSR1, 1, "in epoch 2 after step 1"),  # the loader workers' order continues too
        (2, signal.SIGTERM, 0, "after epoch 1"),  # during an epoch's last step: its own checkpoint
    ],
)
def test_a_checkpoint_signal_then_resume_gives_the_same_weights(  # noqa: PLR0913
    files: dict[str, Path], vox_uda_run: Path, tmp_path: Path, steps: int, signum: int, workers: int, where: str
) -> None:
    from voxuda_cli.signals import Stopped

    settings = vox_uda_settings(files).replace(workers=workers)
    run = tmp_path / "run"
    with pytest.raises(Stopped, match=f"stopped by {signal.Signals(signum).name} {where}") as stopped:
        train(settings, run, progress=SignalAfter(steps, signum))
    assert stopped.value.signum == signum and "--resume" in str(stopped.value)
    saved = torch.load(run / "checkpoint.pt", weights_only=True)
    assert saved["epoch"] == (steps // 2) and saved["steps_done"] == steps
    assert (saved["position"] or {}).get("step", 0) == steps % 2
    assert not (run / ".voxuda.lock").exists()  # the lock went with the stopped run
    summary = train(settings, run, resume=True)
    assert summary["resumed_from"] == steps // 2 or (summary["resumed_from"] is None and steps < 2)
    _assert_identical(run, vox_uda_run)
    drop = ("seconds", "samples_per_s")
    assert [{k: v for k, v in r.items() if k not in drop} for r in _records(run)] == [
        {k: v for k, v in r.items() if k not in drop} for r in _records(vox_uda_run)
    ]


def test_a_resume_inside_an_epoch_needs_that_epoch(files: dict[str, Path], tmp_path: Path) -> None:
    settings = tiny(files, method="source-only", epochs=2)
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(settings, run, progress=SignalAfter(3, signal.SIGTERM))
    with pytest.raises(VoxudaInputError, match="inside epoch 2; pass at least that"):
        train(settings.replace(epochs=1), run, resume=True)


def test_burn_in_trains_without_adaptation_then_starts_the_teacher_from_the_student(
    files: dict[str, Path], tmp_path: Path
) -> None:
    settings = tiny(files, epochs=4, ramp_epochs=4, burn_in=0.5, pl_ramp=0.0, ema=0.99)
    trainer = Trainer(settings, torch.device("cpu"))
    assert trainer.teacher_started_at is None
    method, before, after = trainer.method, Position(1.9, 0.49), Position(3.0, 0.75)
    assert not method.teacher_ready(before) and method.teacher_ready(after)
    assert method.weights(before)["pl"] == 0.0 and method.reversal_weight(before) == 0.0
    assert method.weights(after)["pl"] == 1.0
    assert 0 < method.reversal_weight(after) <= settings.reversal_scale
    with torch.no_grad():
        for parameter in trainer.student.parameters():
            parameter.add_(1.0)
    trainer.steps_done = 7
    trainer.start_teacher()
    assert trainer.teacher_started_at == 7
    for name, value in trainer.teacher.state_dict().items():
        assert torch.equal(value, trainer.student.state_dict()[name])

    run = tmp_path / "run"
    train(settings, run)
    records = _records(run)
    assert [("pl" in r) for r in records] == [False, False, True, True]  # L_pl only after the burn-in
    assert all(r["reversal_weight"] == 0.0 for r in records[:2]) and records[3]["reversal_weight"] > 0
    assert all(0 <= r["agreement"] <= 1 and "teacher_foreground" in r for r in records[2:])
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert state["teacher_started_at"] == 2 * math.ceil(4 / 2)  # two epochs of two steps


def test_paper_recipe_starts_the_teacher_at_once_with_the_warm_up(files: dict[str, Path]) -> None:
    trainer = Trainer(tiny(files, recipe="paper"), torch.device("cpu"))
    assert trainer.settings.ema_warmup and trainer.settings.teacher_input == "denoised"
    start = Position(0.0, 0.0)
    assert trainer.method.teacher_ready(start) and trainer.method.weights(start)["pl"] == 1.0
    assert trainer.method.reversal_weight(start) == 0.0  # the DANN ramp starts at 0
    assert trainer.dis_optimizer is None  # the discriminator shares the segmenter's Adam


def test_explicit_options_win_over_the_recipe(files: dict[str, Path]) -> None:
    settings = tiny(files, recipe="paper", burn_in=0.2, pl_threshold="class-quantile")
    assert settings.burn_in == 0.2 and settings.pl_threshold == "class-quantile"
    assert settings.teacher_input == "denoised"  # the rest from the paper's recipe
    with pytest.raises(VoxudaInputError, match="--recipe mine: unknown"):
        tiny(files, recipe="mine")
    with pytest.raises(VoxudaInputError, match="--burn-in 1.5"):
        tiny(files, burn_in=1.5)


def test_the_collapse_guard_warns_when_the_teacher_labels_far_less_foreground_than_the_source(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from voxuda_cli.training.loop import warn_if_collapsing

    with caplog.at_level("WARNING", logger="voxuda"):
        assert warn_if_collapsing({"epoch": 3, "teacher_foreground": 0.001, "source_foreground": 0.05})
    assert "collapsing to background" in caplog.text and "epoch 3" in caplog.text
    assert not warn_if_collapsing({"epoch": 3, "teacher_foreground": 0.03, "source_foreground": 0.05})
    assert not warn_if_collapsing({"epoch": 1, "source_foreground": 0.05})  # no teacher yet: nothing to say
    caplog.clear()
    with caplog.at_level("WARNING", logger="voxuda"):  # the default recipe uses class-quantile already
        warn_if_collapsing({"epoch": 3, "teacher_foreground": 0.001, "source_foreground": 0.05}, TrainSettings())
    assert "--burn-in" in caplog.text and "class-quantile" not in caplog.text


def test_a_resume_before_the_burn_in_ends_gives_the_same_weights_as_one_run(
    files: dict[str, Path], tmp_path: Path
) -> None:
    # The teacher starts at 60 % of a fixed 3-epoch horizon: after the first invocation stopped.
    settings = tiny(files, epochs=3, ramp_epochs=3, burn_in=0.6, pl_ramp=0.2, dis_lr=1e-4)
    whole, pieces = tmp_path / "whole", tmp_path / "pieces"
    train(settings, whole)
    train(settings.replace(epochs=1), pieces)
    assert torch.load(pieces / "checkpoint.pt", weights_only=True)["teacher_started_at"] is None
    train(settings, pieces, resume=True)
    _assert_identical(pieces, whole)
    state = torch.load(pieces / "checkpoint.pt", weights_only=True)
    assert state["teacher_started_at"] == 4 and state["dis_optimizer"] is not None  # 2 steps an epoch
