from pathlib import Path

import pytest
import torch

from tests.inference.models import random_network, write_model
from voxuda_cli.errors import VoxudaInputError
from voxuda_cli.models import ModelInfo, load_model, save_model
from voxuda_cli.models.serialization import resolve_model_path


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_round_trip_keeps_info_and_picks_teacher_or_student(tmp_path: Path) -> None:
    student, teacher = random_network(width=4, seed=1), random_network(width=4, seed=2)
    path = write_model(tmp_path / "model.pt", student, box=32, voxel_size=7.5, invert=True, eta=0.9, teacher=teacher)
    loaded_teacher, info = load_model(path, "teacher")
    loaded_student, _ = load_model(tmp_path, "student")  # a run folder works too
    assert _same_weights(loaded_teacher, teacher) and _same_weights(loaded_student, student)
    assert not loaded_teacher.training
    assert info.box == (32, 32, 32) and info.voxel_size == 7.5 and info.invert and info.eta == 0.9
    assert info.architecture.width == 4 and info.weights == ("teacher", "student")
    assert info.denoiser_params["sigma_r"] == 1.2


def test_student_only_file_falls_back_to_the_student(tmp_path: Path) -> None:
    network = random_network(width=4)
    save_model(tmp_path / "model.pt", ModelInfo(architecture=network.config), network.state_dict())
    loaded, info = load_model(tmp_path / "model.pt", "teacher")
    assert _same_weights(loaded, network) and info.weights == ("student",)


def test_weights_load_onto_cpu_whatever_device_saved_them(tmp_path: Path) -> None:
    network = random_network(width=4)
    path = write_model(tmp_path / "model.pt", network)
    payload = torch.load(path, map_location="cpu", weights_only=True)
    assert all(t.device.type == "cpu" for t in payload["student"].values())
    loaded, _ = load_model(path, "teacher", device="cpu")
    assert next(loaded.parameters()).device.type == "cpu"


def test_files_that_are_not_models_are_refused(tmp_path: Path) -> None:
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    torch.save({"format": "something-else"}, tmp_path / "other.pt")
    for path in (tmp_path / "junk.pt", tmp_path / "other.pt"):
        with pytest.raises(VoxudaInputError, match="not a voxuda model file"):
            load_model(path)
    with pytest.raises(VoxudaInputError, match="no model file"):
        resolve_model_path(tmp_path / "empty_run")
    write_model(tmp_path / "model.pt")
    with pytest.raises(VoxudaInputError, match="--use"):
        load_model(tmp_path / "model.pt", "average")


def test_a_full_disk_keeps_the_earlier_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.faults import full_disk, leftovers
    from voxuda_cli.errors import VoxudaOutputError

    path = write_model(tmp_path / "model.pt", random_network(width=4, seed=1), box=32, voxel_size=7.5)
    earlier = path.read_bytes()
    full_disk(monkeypatch, capacity=1000)
    with pytest.raises(VoxudaOutputError, match="model.pt: cannot write it: no space left on device"):
        write_model(path, random_network(width=4, seed=2), box=32, voxel_size=7.5)
    assert path.read_bytes() == earlier and leftovers(tmp_path) == []


def test_a_model_of_a_newer_format_is_refused(tmp_path: Path) -> None:
    path = write_model(tmp_path / "model.pt", random_network(width=4, seed=1), box=32, voxel_size=7.5)
    payload = torch.load(path, weights_only=True)
    torch.save({**payload, "format_version": 7}, path)
    with pytest.raises(VoxudaInputError, match=r"model file format version 7 is newer than this voxuda reads \(up to"):
        load_model(path)
