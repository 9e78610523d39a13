"""Label-free checkpoint selection: the figures, the rules, and a run forced to diverge."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.training.datasets import write_blobs
from voxuda_cli.training import TrainSettings, train
from voxuda_cli.training.selection import LAST_MODEL, choose, probe_figures, probe_indices


def test_the_probe_is_fixed_and_spread() -> None:
    assert probe_indices(5) == [0, 1, 2, 3, 4]
    picks = probe_indices(1000)
    assert len(picks) == 64 and picks[0] == 0 and picks[-1] == 999 and picks == sorted(set(picks))


def test_figures_see_stability_size_and_agreement() -> None:
    masks = torch.zeros(2, 8, 8, 8, dtype=torch.bool)
    masks[:, 2:6, 2:6, 2:6] = True
    moved = masks.roll(3, dims=1)
    same = probe_figures(masks.float(), masks, masks, source_foreground=float(masks.float().mean()), reference=masks)
    assert same["sel_stability"] == 1.0 and same["sel_foreground"] == pytest.approx(1.0)
    assert same["sel_agreement"] == 1.0 and same["sel_entropy"] < 1e-3
    unstable = probe_figures(masks.float(), masks, moved, source_foreground=0.5, reference=moved)
    assert unstable["sel_stability"] < 0.5 and unstable["sel_agreement"] < 0.5 and unstable["sel_foreground"] < 0.5


def _record(epoch: int, stability: float, foreground: float = 1.0) -> dict[str, float]:
    return {
        "epoch": epoch,
        "sel_stability": stability,
        "sel_foreground": foreground,
        "sel_entropy": 0.1,
        "sel_agreement": 1.0,
    }


def test_rules_pick_among_candidates_and_say_why() -> None:
    history = [{"epoch": 1}, _record(2, 0.7), _record(3, 0.9), _record(4, 0.8)]
    assert choose(history, "last")["epoch"] == 4  # type: ignore[index]
    chosen = choose(history, "stability")
    assert chosen is not None and chosen["epoch"] == 3 and "3 candidates" in chosen["why"]
    # an empty (or flooding) model is perfectly stable but out of the foreground band: never kept over one in it
    collapsed = [_record(2, 0.8), _record(3, 1.0, foreground=0.0), _record(4, 0.9, foreground=5.0)]
    for rule in ("stability", "stability-sized", "entropy"):
        assert choose(collapsed, rule)["epoch"] == 2  # type: ignore[index]
    assert choose(collapsed[1:], "stability")["epoch"] == 3  # type: ignore[index]  # none in band: all ranked
    assert choose([{"epoch": 1}], "stability-sized") is None


def test_a_run_forced_to_diverge_keeps_an_earlier_checkpoint_and_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    src = write_blobs(tmp_path / "src.h5", n=16, noise=0.3, seed=1)
    tgt = write_blobs(tmp_path / "tgt.h5", n=8, noise=0.5, seed=2, masks=False)
    # a reversal weight of 1000 through the segmenter's own optimiser, with the guard off: the
    # student's target masks vanish in the last epoch (foreground 1 % of the source's)
    settings = TrainSettings(
        src=(src,), tgt=(tgt,), width=8, batch_size=4, epochs=6, threads=1, seed=0, lr=3e-3,
        reversal_scale=1000.0, dis_lr=0.0, dis_guard=0.0, pl_weight=0.0,
    )  # fmt: skip
    with caplog.at_level("WARNING", logger="voxuda"):
        summary = train(settings, tmp_path / "run")
    run = tmp_path / "run"
    chosen = summary["checkpoint"]
    assert chosen["epoch"] < chosen["final_epoch"] == 6
    assert "model.pt holds epoch" in caplog.text and chosen["why"] in caplog.text
    assert json.loads((run / "selection.json").read_text()) == chosen
    assert (run / LAST_MODEL).is_file() and (run / f"candidates/epoch_{chosen['epoch']:03d}.pt").is_file()
    assert (run / "model.pt").read_bytes() == (run / f"candidates/epoch_{chosen['epoch']:03d}.pt").read_bytes()


def test_near_ties_go_to_the_later_epoch() -> None:
    from voxuda_cli.training.selection import TIE_TOLERANCE

    history = [_record(4, 0.8724), _record(5, 0.85), _record(8, 0.8724 - TIE_TOLERANCE / 2)]
    assert choose(history, "stability")["epoch"] == 8  # type: ignore[index]
    history[-1]["sel_stability"] = 0.8724 - 2 * TIE_TOLERANCE
    assert choose(history, "stability")["epoch"] == 4  # type: ignore[index]
