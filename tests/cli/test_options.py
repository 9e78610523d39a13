"""Every command's options come from its settings dataclass, and --help shows each with its default."""

from __future__ import annotations

import dataclasses

import pytest

from voxuda_cli.cli import ibf_denoise, pseudo_label, train
from voxuda_cli.cli.app import COMMANDS, app
from voxuda_cli.cli.options import cli_fields, option_flags
from voxuda_cli.fields import help_text


@pytest.mark.parametrize("module", COMMANDS, ids=lambda m: m.NAME)
def test_help_lists_every_setting_with_its_default(module, runner) -> None:  # type: ignore[no-untyped-def]
    result = runner.invoke(app, [module.NAME, "--help"], terminal_width=100)
    assert result.exit_code == 0, result.output
    text = "".join(result.output.split())  # no whitespace: help lines wrap anywhere (also at hyphens)
    fields = cli_fields(module.SETTINGS)
    assert fields, f"{module.NAME}: no settings field is an option"
    for field in fields:
        bool_type = bool if field.type in ("bool", "bool | None") else None
        for flag in option_flags(field, bool_type)[0].split("/"):
            assert flag in text, f"{module.NAME}: {flag} missing from --help"
        assert "".join(help_text(field).split()) in text, f"{module.NAME}: help of --{field.name} missing"
        assert "[default: " in help_text(field), field.name
    assert "--config" in text


def test_every_field_carries_its_help_text() -> None:
    for module in COMMANDS:
        for field in dataclasses.fields(module.SETTINGS):
            assert field.metadata.get("help"), f"{module.SETTINGS.__name__}.{field.name} has no help text"


def test_a_shared_option_is_defined_once(runner) -> None:  # type: ignore[no-untyped-def]
    texts = {}
    for module in (train, pseudo_label, ibf_denoise):
        field = next(f for f in dataclasses.fields(module.SETTINGS) if f.name == "sigma_r")
        texts[module.NAME] = field.metadata["help"]
    assert len(set(texts.values())) == 1, texts


def test_score_takes_a_config(runner, tmp_path) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "score.toml"
    config.write_text("[score]\nmask_threshold = 2.0\nbogus = 1\n")
    result = runner.invoke(app, ["score", str(tmp_path / "a.h5"), str(tmp_path / "b.h5"), "--config", str(config)])
    assert result.exit_code == 2 and "unknown setting(s) bogus" in result.output
