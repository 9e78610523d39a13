"""Run-directory rules and the checkpoint's RNG states and settings comparison."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from voxuda_cli.config import settings_to_dict
from voxuda_cli.errors import VoxudaInputError
from voxuda_cli.training.checkpoint import (
    check_fresh_run_dir,
    remove_stale_temporaries,
    restore_rng_states,
    rng_states,
    save_checkpoint,
    settings_differences,
)
from voxuda_cli.training.settings import TrainSettings


def test_rng_states_survive_a_weights_only_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    random.gauss(0, 1)  # leaves a cached gaussian in python's state
    save_checkpoint(tmp_path / "c.pt", {"rng": rng_states()})
    expected = (torch.rand(3), np.random.rand(3), random.random(), random.gauss(0, 1))
    restore_rng_states(torch.load(tmp_path / "c.pt", weights_only=True)["rng"])
    again = (torch.rand(3), np.random.rand(3), random.random(), random.gauss(0, 1))
    assert torch.equal(expected[0], again[0])
    np.testing.assert_array_equal(expected[1], again[1])
    assert expected[2:] == again[2:]


def test_only_epochs_device_amp_threads_workers_may_change() -> None:
    saved = settings_to_dict(TrainSettings(epochs=3))
    assert settings_differences(saved, TrainSettings(epochs=5, device="cpu", amp=True, threads=1, workers=2)) == []
    assert settings_differences(saved, TrainSettings(eta=0.9)) == ["eta (0.85 -> 0.9)"]


def test_fresh_run_dir_rules(tmp_path: Path) -> None:
    check_fresh_run_dir(tmp_path / "new", overwrite=False)
    (tmp_path / "empty").mkdir()
    check_fresh_run_dir(tmp_path / "empty", overwrite=False)
    (tmp_path / "file").write_text("x")
    with pytest.raises(VoxudaInputError, match="not a folder"):
        check_fresh_run_dir(tmp_path / "file", overwrite=False)
    used = tmp_path / "used"
    used.mkdir()
    (used / "checkpoint.pt").write_text("x")
    with pytest.raises(VoxudaInputError, match="--resume"):
        check_fresh_run_dir(used, overwrite=False)
    check_fresh_run_dir(used, overwrite=True)


def test_stale_temporaries_are_removed(tmp_path: Path) -> None:
    (tmp_path / ".checkpoint.pt.abc123.tmp.pt").write_text("x")
    (tmp_path / "keep.txt").write_text("x")
    remove_stale_temporaries(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_a_full_disk_keeps_the_earlier_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.faults import full_disk, leftovers
    from voxuda_cli.errors import VoxudaOutputError

    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"epoch": 1, "weights": torch.ones(10)})
    full_disk(monkeypatch, capacity=2000)
    with pytest.raises(VoxudaOutputError, match="checkpoint.pt: cannot write it: no space left on device"):
        save_checkpoint(path, {"epoch": 2, "weights": torch.ones(10_000)})
    assert torch.load(path, weights_only=True)["epoch"] == 1 and leftovers(tmp_path) == []


def test_a_checkpoint_of_a_newer_format_is_refused(tmp_path: Path) -> None:
    from voxuda_cli.training.checkpoint import load_checkpoint

    settings = TrainSettings()
    torch.save({"format": "voxuda-checkpoint", "format_version": 9, "settings": settings_to_dict(settings)},
               tmp_path / "checkpoint.pt")  # fmt: skip
    with pytest.raises(VoxudaInputError, match="checkpoint format version 9 is newer than this voxuda reads"):
        load_checkpoint(tmp_path, settings)
