"""Cut subtomograms at picked particle coordinates out of tomograms, at the model's voxel size.

Picks come from RELION 4 STAR (rlnCoordinateX/Y/Z, tomogram voxels), RELION 5 STAR
(rlnCenteredCoordinateX/Y/ZAngst, angstrom from the tomogram centre; --centre says where that
is), CSV/TSV with x, y, z columns (voxels; optional tomogram column) or IMOD .mod models. Picks
are matched to tomograms by rlnTomoName / rlnMicrographName / the tomogram column, else by the
coordinate file's name. Boxes are Fourier-resampled from the tomogram's voxel size to
--voxel-size, streamed from a memory map. OUT.h5 records each box's centre (/coords), tomogram
(/parents) and the tomograms' shape, voxel size and origin, so `voxuda predict --paste` puts the
segmentations back.

Example: voxuda extract TS_01.mrc --coords particles.star -o subtomos.h5 --box 32 --voxel-size 10
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

import typer

from voxuda_cli.cli.common import bar_progress, emit, progress_bar
from voxuda_cli.cli.options import param, settings_command
from voxuda_cli.extract import ExtractSettings

log = logging.getLogger("voxuda")

NAME = "extract"
SETTINGS = ExtractSettings
_COLUMNS = ("name", "shape", "voxel_size", "picks", "extracted", "padded", "skipped_border", "skipped_outside")

TomogramsArg = Annotated[
    list[Path], typer.Argument(help="Tomograms (MRC, OME-Zarr, folders of them; copick.json:tomogram=T:spacing=A).")
]
CoordsOpt = Annotated[
    list[Path],
    typer.Option("--coords", help="Coordinates: .star (RELION 4/5), .csv/.tsv, IMOD .mod, copick.json:object=NAME."),
]
OutputOpt = Annotated[Path, typer.Option("-o", "--output", help="Output HDF5 dataset of subtomograms.")]


def run(settings: ExtractSettings, tomograms: list[Path], coords: list[Path], output: Path, as_json: bool) -> None:
    from voxuda_cli.config import settings_to_dict
    from voxuda_cli.extract import already_extracted, plan_extraction, write_subtomograms
    from voxuda_cli.io.dataset import provenance

    if already_extracted(output, settings):
        log.info("--skip-existing: %s exists; nothing to extract", output)
        emit({"output": str(output), "skipped": True, "tomograms": []}, as_json, None)
        return
    plan = plan_extraction(list(tomograms), list(coords), settings)
    origin = provenance(NAME, settings_to_dict(settings), [str(p) for p in [*tomograms, *coords]])
    with progress_bar() as bar:
        task = bar.add_task(NAME, total=plan.total, status="")
        summary = write_subtomograms(output, plan, origin, bar_progress(bar, task))
    emit(summary, as_json, _table(summary) if summary["output"] is not None else None)


def _table(summary: dict[str, Any]) -> Any:
    from rich.table import Table

    table = Table(title=f"extract -> {summary['output']} ({summary['box']}^3 at {summary['voxel_size']:.3f} A)")
    for column in _COLUMNS:
        table.add_column(column, justify="left" if column == "name" else "right")
    for record in summary["tomograms"]:
        shape = "x".join(str(n) for n in record["shape"])
        table.add_row(record["name"], shape, *(str(record[c]) for c in _COLUMNS[2:]))
    return table


command = settings_command(
    NAME,
    ExtractSettings,
    run,
    arguments=[param("tomograms", TomogramsArg), param("coords", CoordsOpt), param("output", OutputOpt)],
)
