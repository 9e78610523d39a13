"""Cut volumes into cubic patches (for tomograms or large subtomograms) into one HDF5 dataset.

Patches are non-overlapping by default (stride = patch), as the paper does for its 192^3 and 64^3
volumes. Where the grid does not end flush with a border, one last patch is placed flush with it
(overlapping its neighbour), so every voxel is covered and nothing is padded; an axis shorter than
the patch is padded by edge replication. /coords and /parents record where each patch came from,
and the parent shapes and headers are kept, so `voxuda predict` stitches predictions back.

Example: voxuda patchify tomos/*.mrc -o patches.h5 --resize 64
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from voxuda_cli.cli.common import ConfigOpt, JsonOpt, VerboseOpt, cli_errors, emit, progress_bar, setup_logging
from voxuda_cli.config import describe
from voxuda_cli.patches import PatchifySettings

NAME = "patchify"


def command(
    inputs: Annotated[list[Path], typer.Argument(help="MRC files, folders of MRC files, or one HDF5 dataset.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Output HDF5 dataset of patches.")],
    patch: Annotated[int | None, typer.Option(help=describe(PatchifySettings, "patch", "Patch edge (voxels)."))] = None,
    stride: Annotated[
        int | None, typer.Option(help="Step between patches (voxels); smaller than --patch overlaps. [default: patch]")
    ] = None,
    resize: Annotated[
        int | None,
        typer.Option(help="Resample each volume to N^3 first (Fourier resampling; voxel size scales). [default: off]"),
    ] = None,
    zscore: Annotated[
        bool | None,
        typer.Option("--zscore/--no-zscore", help=describe(PatchifySettings, "zscore", "Z-score each volume.")),
    ] = None,
    invert: Annotated[
        bool | None,
        typer.Option(
            "--invert/--no-invert", help=describe(PatchifySettings, "invert", "Flip contrast (dark protein).")
        ),
    ] = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    setup_logging(verbose)
    with cli_errors(NAME):
        from rich.table import Table

        from voxuda_cli.config import resolve_settings, settings_to_dict
        from voxuda_cli.io.dataset import provenance
        from voxuda_cli.io.sources import count_inputs, iter_volumes
        from voxuda_cli.patches import write_patches

        settings = resolve_settings(
            PatchifySettings, config, NAME, patch=patch, stride=stride, resize=resize, zscore=zscore, invert=invert
        )
        total = count_inputs(inputs)
        origin = provenance(NAME, settings_to_dict(settings), [str(p) for p in inputs])
        with progress_bar() as bar:
            task = bar.add_task("patchify", total=total, status="")
            summary = write_patches(
                output,
                iter_volumes(inputs, mmap=True),
                settings,
                origin,
                on_volume=lambda name, n: bar.update(task, advance=1, status=f"{name}: {n} patches"),
            )
        table = Table(title="patchify")
        for key in ("output", "parents", "patches", "patch", "stride", "voxel_size"):
            table.add_column(key)
        table.add_row(*(str(summary[k]) for k in ("output", "parents", "patches", "patch", "stride", "voxel_size")))
        emit(summary, as_json, table)
