import subprocess
import sys

from voxuda_cli import __version__
from voxuda_cli.cli.app import app

COMMANDS = ("simulate-prep", "patchify", "estimate-noise", "ibf-denoise", "train", "pseudo-label", "predict", "score")


def test_help_lists_the_eight_subcommands(runner) -> None:  # type: ignore[no-untyped-def]
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in COMMANDS:
        assert command in result.output


def test_each_subcommand_has_help(runner) -> None:  # type: ignore[no-untyped-def]
    for command in COMMANDS:
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0, (command, result.output)


def test_version_and_python_m() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "voxuda_cli", "--version"], capture_output=True, text=True, check=True
    )
    assert completed.stdout.strip() == f"voxuda {__version__}"
