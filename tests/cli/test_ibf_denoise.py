import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import sphere
from voxuda_cli.cli.app import app
from voxuda_cli.filters import bilateral_filter, improved_bilateral_filter
from voxuda_cli.io.dataset import Dataset, read_h5_dataset, write_dataset
from voxuda_cli.io.mrc import read_mrc, write_mrc
from voxuda_cli.io.volume import Volume


def _volume(path: Path, shape=(12, 14, 16), seed: int = 0) -> Path:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    data = (sphere(max(shape), 4)[: shape[0], : shape[1], : shape[2]] * 20 + rng.normal(60, 8, shape)).astype(
        np.float32
    )
    write_mrc(path, Volume(data, voxel_size=(6.0, 6.0, 6.0), origin=(1.0, 2.0, 3.0), labels=["raw"]))
    return path


def _on_input_scale(data: np.ndarray, method: str) -> np.ndarray:
    mean, std = data.astype(np.float64).mean(), data.astype(np.float64).std()
    filtered = {"ibf": improved_bilateral_filter, "bf": bilateral_filter}[method]
    return filtered(torch.from_numpy(((data - mean) / std).astype(np.float32))).numpy() * std + mean


def test_mrc_in_mrc_out_keeps_header_and_scale(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    source = _volume(tmp_path / "tomo.mrc")
    result = runner.invoke(
        app, ["ibf-denoise", str(source), "-o", str(tmp_path / "out.mrc"), "--preview", str(tmp_path / "p.png")]
    )
    assert result.exit_code == 0, result.output
    out = read_mrc(tmp_path / "out.mrc")
    assert out.voxel_size == (6.0, 6.0, 6.0) and out.origin == (1.0, 2.0, 3.0) and out.labels[0] == "raw"
    np.testing.assert_allclose(out.data, _on_input_scale(read_mrc(source).data, "ibf"), rtol=1e-5, atol=1e-4)
    assert (tmp_path / "p.png").stat().st_size > 0
    chunked = runner.invoke(app, ["ibf-denoise", str(source), "-o", str(tmp_path / "c.mrc"), "--chunk", "2", "--json"])
    assert chunked.exit_code == 0, chunked.output
    assert json.loads(chunked.stdout)["mode"] == "mrc"
    np.testing.assert_array_equal(read_mrc(tmp_path / "c.mrc").data, out.data)


def test_folder_of_mrc_to_folder_bf_and_ngm(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "in").mkdir()
    for i in range(2):
        _volume(tmp_path / "in" / f"v{i}.mrc", seed=i)
    result = runner.invoke(app, ["ibf-denoise", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--denoiser", "bf"])
    assert result.exit_code == 0, result.output
    for i in range(2):
        expected = _on_input_scale(read_mrc(tmp_path / "in" / f"v{i}.mrc").data, "bf")
        np.testing.assert_allclose(read_mrc(tmp_path / "out" / f"v{i}.mrc").data, expected, rtol=1e-5, atol=1e-4)
    ngm = runner.invoke(
        app, ["ibf-denoise", str(tmp_path / "in" / "v0.mrc"), "-o", str(tmp_path / "n.mrc"), "--method", "ngm"]
    )
    assert ngm.exit_code == 0, ngm.output
    source, cleaned = read_mrc(tmp_path / "in" / "v0.mrc").data, read_mrc(tmp_path / "n.mrc").data
    assert cleaned.mean() == pytest.approx(source.mean(), rel=1e-4) and cleaned.std() < source.std()


def test_dataset_in_dataset_out(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(1)
    masks = np.stack([sphere(16, 3 + i) for i in range(3)])
    dataset = Dataset(
        images=(masks * 5 + rng.normal(0, 2, masks.shape)).astype(np.float32),
        names=["a", "b", "c"],
        voxel_size=10.0,
        masks=masks,
        classes=["x", "y", "x"],
        kind="target",
    )
    write_dataset(tmp_path / "in.h5", dataset)
    result = runner.invoke(app, ["ibf-denoise", str(tmp_path / "in.h5"), "-o", str(tmp_path / "out.h5"), "--json"])
    assert result.exit_code == 0, result.output
    out = read_h5_dataset(tmp_path / "out.h5")
    assert out.names == dataset.names and out.classes == dataset.classes and out.kind == "target"
    np.testing.assert_array_equal(out.masks, masks)
    assert json.loads(out.attrs["provenance"])["command"] == "ibf-denoise"
    for i in range(3):
        np.testing.assert_allclose(out.images[i], _on_input_scale(dataset.images[i], "ibf"), rtol=1e-5, atol=1e-4)


def test_bad_inputs_exit_2_and_write_nothing(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    good = _volume(tmp_path / "good.mrc")
    other = _volume(tmp_path / "other.mrc")
    (tmp_path / "junk.mrc").write_bytes(b"junk")
    nan = np.ones((8, 8, 8), np.float32)
    nan[1, 2, 3] = np.nan
    write_mrc(tmp_path / "nan.mrc", Volume(nan))
    out = tmp_path / "out.mrc"
    cases = [
        [str(tmp_path / "missing.mrc"), "-o", str(out)],
        [str(tmp_path / "junk.mrc"), "-o", str(out)],
        [str(tmp_path / "nan.mrc"), "-o", str(out)],
        [str(good), "-o", str(out), "--keep-rate", "1.5"],
        [str(good), "-o", str(out), "--denoiser", "median"],
        [str(good), "-o", str(out), "--sigma-r", "0"],
        [str(good), "-o", str(out), "--chunk", "0"],
        [str(good), str(other), "-o", str(out)],
        [str(good), "-o", str(good)],
        [str(good), str(tmp_path / "nan.mrc"), "-o", str(tmp_path / "folder")],
    ]
    for args in cases:
        result = runner.invoke(app, ["ibf-denoise", *args])
        assert result.exit_code == 2, (args, result.output)
        assert "error" in result.output and "Traceback" not in result.output
        assert not out.exists() and not (tmp_path / "folder").exists()
        assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]


def test_the_old_method_option_still_works_and_says_it_is_deprecated(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    volume = np.random.default_rng(0).normal(size=(16, 16, 16)).astype(np.float32)
    write_mrc(tmp_path / "in.mrc", Volume(volume, voxel_size=10.0))
    old = runner.invoke(app, ["ibf-denoise", str(tmp_path / "in.mrc"), "-o", str(tmp_path / "a.mrc"), "--method", "bf"])
    assert old.exit_code == 0, old.output
    assert "deprecated" in old.output and "--denoiser bf" in old.output
    new = runner.invoke(
        app, ["ibf-denoise", str(tmp_path / "in.mrc"), "-o", str(tmp_path / "b.mrc"), "--denoiser", "bf"]
    )
    assert new.exit_code == 0 and "deprecated" not in new.output
    np.testing.assert_array_equal(read_mrc(tmp_path / "a.mrc").data, read_mrc(tmp_path / "b.mrc").data)


def test_shards_and_skip_existing_in_folder_mode(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    (tmp_path / "in").mkdir()
    for index in range(5):
        write_mrc(tmp_path / "in" / f"v{index}.mrc", Volume(rng.normal(size=(12, 12, 12)).astype(np.float32), 10.0))
    out = tmp_path / "out"
    written: list[str] = []
    for shard in ("1/2", "2/2"):
        result = runner.invoke(app, ["ibf-denoise", str(tmp_path / "in"), "-o", str(out), "--shard", shard, "--json"])
        assert result.exit_code == 0, result.output
        written += [v["name"] for v in json.loads(result.stdout)["volumes"]]
    assert sorted(written) == [f"v{i}" for i in range(5)]
    (out / "v3.mrc").unlink()
    result = runner.invoke(app, ["ibf-denoise", str(tmp_path / "in"), "-o", str(out), "--skip-existing", "--json"])
    assert result.exit_code == 0 and [v["name"] for v in json.loads(result.stdout)["volumes"]] == ["v3"]
