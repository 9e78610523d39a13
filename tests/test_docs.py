"""docs/METHOD.md states defaults the code has: every `--option NUMBER` it names is that option's default."""

import re
from pathlib import Path

from voxuda_cli.cli.app import COMMANDS

ROOT = Path(__file__).resolve().parents[1]


def _defaults() -> dict[str, list[float]]:
    """Each option's default in every command that has it (recipe fields resolved by the default recipe)."""
    import dataclasses

    found: dict[str, list[float]] = {}
    for module in COMMANDS:
        try:
            settings = module.SETTINGS()
        except TypeError:  # settings that need arguments have no numeric defaults to state
            continue
        for field in dataclasses.fields(settings):
            value = getattr(settings, field.name)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                found.setdefault("--" + field.name.replace("_", "-"), []).append(float(value))
    return found


def test_numbers_method_md_gives_for_options_are_their_defaults() -> None:
    text = (ROOT / "docs" / "METHOD.md").read_text()
    stated = re.findall(r"`(--[a-z-]+) (-?[0-9.]+(?:e-?[0-9]+)?)`", text)
    stated += re.findall(r"--[a-z-]+ [^`]*?(--[a-z-]+) (-?[0-9.]+(?:e-?[0-9]+)?)`", text)
    defaults = _defaults()
    assert len(stated) >= 5
    wrong = [f"{option} {value}" for option, value in stated if float(value) not in defaults.get(option, [])]
    assert wrong == [], f"METHOD.md names defaults the code does not have: {wrong}"
