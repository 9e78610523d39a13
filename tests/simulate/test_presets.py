from pathlib import Path

import pytest

from voxuda_cli.errors import VoxudaInputError
from voxuda_cli.simulate.presets import SimulationSettings, preset, resolve_simulation_settings


def test_source_preset_is_the_papers_setting() -> None:
    settings = preset("source")
    assert settings == SimulationSettings()
    assert settings.snr == (0.03, 0.05) and settings.snr_distribution == "levels"
    assert settings.n_samples == 3000  # 3 molecules x 2 SNR levels x 500
    assert settings.n_tilts == 41 and (settings.box, settings.voxel_size) == (32, 10.0)
    assert settings.kind == "source"


def test_target_preset_uses_other_molecules_and_optics() -> None:
    source, target = preset("source"), preset("target")
    assert not set(source.structures) & set(target.structures)
    assert target.snr_distribution == "log-uniform" and target.snr == (0.01, 0.1)
    assert target.defocus != source.defocus and target.tilt_range != source.tilt_range
    assert target.kind == "target" and target.n_samples == 3 * target.n_per_structure


def test_options_override_the_preset_and_the_config(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[simulate-prep]\npreset = "target"\nn_per_structure = 7\ntilt_range = [-40, 40]\n')
    settings = resolve_simulation_settings(config, n_per_structure=3, box=None)
    assert settings.preset == "target" and settings.structures == ("6qt9", "4jsv", "7cth")  # from the preset
    assert settings.tilt_range == (-40.0, 40.0)  # from the config
    assert settings.n_per_structure == 3  # the option wins
    plain = resolve_simulation_settings(None, preset="target", snr=(0.02, 0.2))
    assert plain.snr == (0.02, 0.2) and plain.snr_distribution == "log-uniform"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"snr": (0.0,)}, "--snr 0"),
        ({"snr": (-0.1, 0.05)}, "--snr"),
        ({"snr_distribution": "log-uniform", "snr": (0.05,)}, "two values"),
        ({"snr": (0.05, 0.05)}, "repeated"),
        ({"tilt_range": (60.0, -60.0)}, "--tilt-range"),
        ({"defocus": (-1.0, 2.0)}, "--defocus"),
        ({"box": 4}, "--box"),
        ({"workers": 0}, "--workers"),
        ({"ctf_correction": "wiener"}, "--ctf-correction"),
        ({"preset": "mine"}, "--preset"),
        ({"structures": ()}, "--structures"),
        ({"nuisance_probability": 1.5}, "--nuisance-probability"),
    ],
)
def test_bad_values_raise(values: dict, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(VoxudaInputError, match=message):
        SimulationSettings(**values)
