from dataclasses import dataclass
from pathlib import Path

import pytest

from voxuda_cli.config import describe, dump_toml, load_config, resolve_settings, settings_to_dict
from voxuda_cli.errors import VoxudaInputError


@dataclass
class Example:
    epochs: int = 300
    lr: float = 1e-3
    name: str = "x"
    weights: tuple[float, ...] = (0.2, 0.3)


def test_defaults_then_config_then_cli(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("[train]\nepochs = 5\nlr = 0.01\nweights = [1.0, 2.0]\n")
    settings = resolve_settings(Example, config, "train", epochs=7, lr=None)
    assert settings == Example(epochs=7, lr=0.01, name="x", weights=(1.0, 2.0))
    assert resolve_settings(Example) == Example()


def test_top_level_keys_and_unknown_keys(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("epochs = 2\n")
    assert resolve_settings(Example, config, "train").epochs == 2
    config.write_text("epoch = 2\n")
    with pytest.raises(VoxudaInputError, match="unknown setting\\(s\\) epoch"):
        resolve_settings(Example, config, "train")


def test_bad_config_files(tmp_path: Path) -> None:
    with pytest.raises(VoxudaInputError, match="config file not found"):
        load_config(tmp_path / "none.toml", "x")
    (tmp_path / "bad.toml").write_text("epochs = = 2")
    with pytest.raises(VoxudaInputError, match="not valid TOML"):
        load_config(tmp_path / "bad.toml", "x")


def test_dump_round_trips(tmp_path: Path) -> None:
    settings = Example(epochs=3, name='a "quoted" name')
    (tmp_path / "c.toml").write_text(dump_toml(settings_to_dict(settings)))
    assert resolve_settings(Example, tmp_path / "c.toml") == settings


def test_help_shows_the_dataclass_default() -> None:
    assert describe(Example, "epochs", "Epochs.") == "Epochs. [default: 300]"
