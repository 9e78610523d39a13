"""`voxuda train`: a tiny run with --json and --config, and bad input -> exit 2 with the run directory untouched."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.training.datasets import snapshot, write_blobs
from voxuda_cli.cli.app import app
from voxuda_cli.models.speed import cpu_has_bf16

TINY = ["--width", "8", "--batch-size", "2", "--epochs", "1", "--threads", "1"]


@pytest.fixture(autouse=True)
def keep_torch_threads():  # type: ignore[no-untyped-def]
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("train_cli")
    return {
        "src": write_blobs(folder / "src.h5", n=2, seed=1),
        "tgt": write_blobs(folder / "tgt.h5", n=2, noise=1.0, seed=2, masks=False),
        "tgt_13A": write_blobs(folder / "tgt13.h5", n=2, seed=3, voxel_size=13.0, masks=False),
        "unlabelled": write_blobs(folder / "unlabelled.h5", n=2, seed=4, masks=False),
        "box30": write_blobs(folder / "box30.h5", n=2, seed=5, box=30),
    }


def _train(runner, *args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, ["train", *args])


def test_train_json_summary_and_run_files(runner, data: dict[str, Path], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run = tmp_path / "run"
    config = tmp_path / "train.toml"
    config.write_text('[train]\nmethod = "dann"\nlr = 0.002\ncon_lambdas = [0.1, 0.2, 0.3, 0.4]\n')
    args = ["--src", str(data["src"]), "--tgt", str(data["tgt_13A"]), "-o", str(run), *TINY]
    result = _train(runner, *args, "--config", str(config), "--amp", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (
        summary["method"] == "dann" and summary["epochs_run"] == 1 and set(summary["final"]) == {"loss", "seg", "dis"}
    )
    stderr = " ".join(result.stderr.split())  # rich wraps lines
    assert "voxel size 13.000" in stderr  # the 30 % voxel-size mismatch is a warning without --strict
    # bf16 on a CPU that has it, else float32 with a word
    assert ("--amp: bf16 autocast on the CPU" if cpu_has_bf16() else "--amp: this cpu has no fast bf16") in stderr
    config_written = (run / "config.toml").read_text()
    assert 'method = "dann"' in config_written and "lr = 0.002" in config_written
    assert "con_lambdas = [0.1, 0.2, 0.3, 0.4]" in config_written
    for name in ("model.pt", "checkpoint.pt", "metrics.jsonl", "curves.png"):
        assert (run / name).is_file()
    # The same command again refuses to overwrite, then resumes (nothing left to do at epoch 1 of 1) ...
    again = _train(runner, *args, "--config", str(config))
    assert again.exit_code == 2 and "--resume" in " ".join(again.output.split())
    resumed = _train(runner, *args, "--config", str(config), "--resume", "--json")
    assert resumed.exit_code == 0, resumed.output
    assert json.loads(resumed.stdout)["epochs_run"] == 0
    # ... and a resume needs no options but the run directory (its config.toml); the table shows without --json.
    table = _train(runner, "-o", str(run), "--resume", "--epochs", "2")
    assert table.exit_code == 0, table.output
    assert "final seg" in table.stdout and len((run / "metrics.jsonl").read_text().splitlines()) == 2


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("source without masks", "no /masks"),
        ("strict voxel size", "--strict"),
        ("box not a multiple of 8", "multiple of 8"),
        ("unknown method", "--method"),
        ("resume without checkpoint", "checkpoint.pt not found"),
        ("missing file", "not found"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(
    runner, data: dict[str, Path], tmp_path: Path, case: str, message: str
) -> None:  # type: ignore[no-untyped-def]
    run = tmp_path / "run"
    src, tgt, extra = data["src"], data["tgt"], []
    if case == "source without masks":
        src = data["unlabelled"]
    elif case == "strict voxel size":
        tgt, extra = data["tgt_13A"], ["--strict"]
    elif case == "box not a multiple of 8":
        src = data["box30"]
    elif case == "unknown method":
        extra = ["--method", "mean-teacher"]
    elif case == "resume without checkpoint":
        extra = ["--resume"]
    elif case == "missing file":
        tgt = tmp_path / "missing.h5"
    result = _train(runner, "--src", str(src), "--tgt", str(tgt), "-o", str(run), *TINY, *extra)
    assert result.exit_code == 2, result.output
    output = " ".join(result.output.split())
    assert message in output and "Traceback" not in output
    assert not run.exists()


def test_resume_with_other_settings_leaves_the_run_untouched(runner, data: dict[str, Path], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run = tmp_path / "run"
    args = ["--src", str(data["src"]), "--tgt", str(data["tgt"]), "-o", str(run), "--method", "source-only", *TINY]
    assert _train(runner, *args).exit_code == 0
    before = snapshot(run)
    result = _train(runner, *args, "--resume", "--width", "4", "--epochs", "2")
    assert result.exit_code == 2 and "width (8 -> 4)" in " ".join(result.output.split())
    assert snapshot(run) == before


def test_a_second_train_into_a_live_run_directory_is_refused(runner, data: dict[str, Path], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import signal

    from tests.faults import voxuda, wait_for

    run = tmp_path / "run"
    args = ["train", "--src", str(data["src"]), "--tgt", str(data["tgt"]), "-o", str(run), *TINY]
    first = voxuda(*args, "--method", "source-only")
    # config.toml is written under the lock; the first run is then paused, so it cannot end meanwhile.
    wait_for(first, lambda: (run / "config.toml").exists())
    first.send_signal(signal.SIGSTOP)
    try:
        second = _train(runner, *args[1:], "--overwrite")
    finally:
        first.send_signal(signal.SIGCONT)
    assert second.exit_code == 2, second.output
    assert f"another voxuda process (pid {first.pid}) is writing it" in second.stderr
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err.decode()
    assert (run / "model.pt").is_file() and not (run / ".voxuda.lock").exists()


def test_sigterm_checkpoints_exits_143_and_resume_finishes(runner, data: dict[str, Path], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import signal

    from tests.faults import leftovers, voxuda, wait_for

    run = tmp_path / "run"
    args = ["--src", str(data["src"]), "--tgt", str(data["tgt"]), "-o", str(run), *TINY, "--method", "source-only"]
    process = voxuda("train", *args, "--epochs", "1000")  # far more than can run before the signal
    wait_for(process, lambda: (run / "config.toml").exists())  # written once the signal is answered by a checkpoint
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=300)
    assert process.returncode == 143, err.decode()
    assert "stopped by SIGTERM" in err.decode() and "--resume" in err.decode() and "Traceback" not in err.decode()
    saved = torch.load(run / "checkpoint.pt", weights_only=True)
    assert saved["epoch"] < 1000 and leftovers(run) == []
    result = _train(runner, "-o", str(run), "--resume", "--epochs", str(saved["epoch"] + 1), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["resumed_from"] in (saved["epoch"], None)


def test_help_lists_every_method_with_its_one_line_summary(runner) -> None:  # type: ignore[no-untyped-def]
    from voxuda_cli.training.methods import get_method, names

    result = runner.invoke(app, ["train", "--help"], terminal_width=200)
    assert result.exit_code == 0
    lines = result.output.splitlines()
    for name in names():
        summary = get_method(name).summary
        assert summary and any(line.split() == [name, *summary.split()] for line in lines), name
