"""Several processes: torchrun's environment, and a real two-process (gloo, CPU) run of one tiny epoch."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.training.datasets import write_blobs
from voxuda_cli.training.distributed import DistributedContext


def test_context_from_torchrun_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    single = DistributedContext.from_env()
    assert (single.rank, single.world_size, single.is_distributed, single.is_main) == (0, 1, False, True)
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    context = DistributedContext.from_env()
    assert (context.rank, context.world_size, context.local_rank, context.is_main) == (3, 4, 1, False)
    assert context.device_for(torch.device("cuda")) == torch.device("cuda", 1)
    assert context.device_for(torch.device("cpu")) == torch.device("cpu")


def test_two_cpu_processes_train_one_epoch(tmp_path: Path) -> None:
    from voxuda_cli.models import load_model

    src = write_blobs(tmp_path / "src.h5", n=4, seed=1)
    tgt = write_blobs(tmp_path / "tgt.h5", n=3, noise=1.0, seed=2, masks=False)
    run = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    command += ["-m", "voxuda_cli", "train", "--src", str(src), "--tgt", str(tgt), "-o", str(run)]
    command += ["--width", "8", "--batch-size", "4", "--epochs", "1", "--json"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)  # only rank 0 prints
    assert summary["processes"] == 2 and summary["epochs_run"] == 1
    assert all(math.isfinite(v) for v in summary["final"].values())
    (record,) = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert record["epoch"] == 1 and math.isfinite(record["con"])
    model, info = load_model(run)
    assert info.method == "vox-uda" and info.settings["batch_size"] == 4


def test_sigterm_to_torchrun_checkpoints_on_every_process_then_resume(tmp_path: Path) -> None:
    import signal

    from tests.faults import wait_for

    src = write_blobs(tmp_path / "src.h5", n=4, seed=1)
    run = tmp_path / "run"
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    launch += ["-m", "voxuda_cli", "train", "--src", str(src), "-o", str(run), "--method", "source-only"]
    launch += ["--width", "4", "--batch-size", "4"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([*launch, "--epochs", "1000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    wait_for(process, lambda: (run / "config.toml").exists())  # every process answers SIGTERM from here
    process.send_signal(signal.SIGTERM)  # torchrun passes it on to both processes
    _, err = process.communicate(timeout=300)
    assert err.decode().count("voxuda train: stopped by SIGTERM") == 2, err.decode()[-3000:]
    saved = torch.load(run / "checkpoint.pt", weights_only=True)
    result = subprocess.run([*launch, "--resume", "--epochs", str(saved["epoch"] + 1)], capture_output=True, env=env)
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    assert len((run / "metrics.jsonl").read_text().splitlines()) == saved["epoch"] + 1
