"""The ``voxuda`` command: one typer app, one thin module per subcommand."""

from __future__ import annotations

from typing import Annotated

import typer

from voxuda_cli import __version__
from voxuda_cli.cli import (
    estimate_noise,
    extract,
    ibf_denoise,
    patchify,
    picks,
    predict,
    pseudo_label,
    score,
    simulate_prep,
    train,
)

app = typer.Typer(
    name="voxuda",
    help=(
        "Vox-UDA for cryo-ET: train a 3D segmentation network on simulated subtomograms and adapt it "
        "to real, unlabelled tomograms. Subcommands read and write HDF5 datasets and MRC files and "
        "chain into the workflow: simulate-prep -> extract or patchify -> estimate-noise -> ibf-denoise -> train "
        "-> pseudo-label -> predict -> picks / score."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help texts are plain: "[default: x]" must not be read as markup
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"voxuda {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """voxuda: voxel-wise unsupervised domain adaptation for cryo-ET subtomogram segmentation."""


# The subcommands, in the order of the workflow (the one list; tests read it too).
COMMANDS = (simulate_prep, extract, patchify, estimate_noise, ibf_denoise, train, pseudo_label, predict, picks, score)

for module in COMMANDS:
    # HELP: a help text that adds what is known only at import (e.g. the registered methods)
    app.command(name=module.NAME, help=getattr(module, "HELP", module.__doc__), no_args_is_help=True)(module.command)


def main() -> None:
    # torchrun launches "python -m voxuda_cli train ..." once per rank; nothing special is needed here.
    app()
