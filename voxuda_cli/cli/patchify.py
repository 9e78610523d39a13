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

from voxuda_cli.cli.common import InputsArg, bar_progress, emit, progress_bar
from voxuda_cli.cli.options import param, settings_command
from voxuda_cli.patches import PatchifySettings

NAME = "patchify"
SETTINGS = PatchifySettings
_COLUMNS = ("output", "parents", "patches", "patch", "stride", "voxel_size")

OutputOpt = Annotated[Path, typer.Option("-o", "--output", help="Output HDF5 dataset of patches.")]


def run(settings: PatchifySettings, inputs: list[Path], output: Path, as_json: bool) -> None:
    from rich.table import Table

    from voxuda_cli.config import settings_to_dict
    from voxuda_cli.io.dataset import provenance
    from voxuda_cli.io.sources import check_voxel_sizes, count_inputs, iter_volumes
    from voxuda_cli.patches import write_patches

    total = count_inputs(inputs)
    check_voxel_sizes(inputs, settings.input_voxel_size)  # every header before the first patch
    origin = provenance(NAME, settings_to_dict(settings), [str(p) for p in inputs])
    with progress_bar() as bar:
        task = bar.add_task("patchify", total=total, status="")
        summary = write_patches(
            output,
            iter_volumes(inputs, mmap=True, input_voxel_size=settings.input_voxel_size),
            settings,
            origin,
            on_volume=bar_progress(bar, task),
        )
    table = Table(title="patchify")
    for key in _COLUMNS:
        table.add_column(key)
    table.add_row(*(str(summary[k]) for k in _COLUMNS))
    emit(summary, as_json, table)


command = settings_command(
    NAME, PatchifySettings, run, arguments=[param("inputs", InputsArg), param("output", OutputOpt)]
)
