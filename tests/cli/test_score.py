import json
from pathlib import Path

import numpy as np

from voxuda_cli.cli.app import app
from voxuda_cli.io.dataset import Dataset, write_dataset
from voxuda_cli.io.mrc import write_mrc
from voxuda_cli.io.volume import Volume


def _write(path: Path, masks: np.ndarray, names: list[str], classes: list[str] | None = None) -> Path:
    write_dataset(path, Dataset(images=masks.astype(np.float32), names=names, masks=masks, classes=classes))
    return path


def test_score_json_keys_and_values(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    truth = np.zeros((2, 8, 8, 8), np.uint8)
    truth[0, :4] = 1
    prediction = truth.copy()
    prediction[1] = 0  # both empty: a perfect 1.0
    prediction[0, 4:8] = 1  # 512 predicted vs 256 true, overlap 256
    _write(tmp_path / "gt.h5", truth, ["a", "b"], ["k", "k"])
    _write(tmp_path / "pred.h5", prediction, ["b", "a"][::-1])
    result = runner.invoke(
        app, ["score", str(tmp_path / "pred.h5"), str(tmp_path / "gt.h5"), "--json", "--csv", str(tmp_path / "s.csv")]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert set(report) >= {"samples", "mean", "per_class", "global"}
    by_name = {s["name"]: s for s in report["samples"]}
    assert by_name["a"]["iou"] == 0.5 and by_name["b"]["dice"] == 1.0
    assert report["per_class"]["k"]["n"] == 2
    assert (tmp_path / "s.csv").read_text().splitlines()[0] == "name,class,iou,dice"


def test_score_folders_of_mrc(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    for side in ("pred", "gt"):
        (tmp_path / side).mkdir()
        mask = np.zeros((8, 8, 8), np.uint8)
        mask[2:6, 2:6, 2:6] = 1
        write_mrc(tmp_path / side / "x.mrc", Volume(mask))
    result = runner.invoke(
        app, ["score", str(tmp_path / "pred"), str(tmp_path / "gt"), "--preview", str(tmp_path / "s.png")]
    )
    assert result.exit_code == 0, result.output
    assert "1.000" in result.stdout
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"


def test_unmatched_and_missing(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    masks = np.zeros((1, 8, 8, 8), np.uint8)
    _write(tmp_path / "gt.h5", masks, ["a"])
    _write(tmp_path / "pred.h5", masks, ["z"])
    result = runner.invoke(app, ["score", str(tmp_path / "pred.h5"), str(tmp_path / "gt.h5")])
    assert result.exit_code == 2 and "unmatched" in result.output
    result = runner.invoke(app, ["score", str(tmp_path / "none.h5"), str(tmp_path / "gt.h5")])
    assert result.exit_code == 2 and "file not found" in result.output
