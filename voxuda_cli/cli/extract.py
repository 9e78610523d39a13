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

from pathlib import Path
from typing import Annotated

import typer

from voxuda_cli.cli.common import ConfigOpt, JsonOpt, VerboseOpt, cli_errors, emit, progress_bar, setup_logging
from voxuda_cli.config import describe
from voxuda_cli.extract import ExtractSettings

NAME = "extract"
S = ExtractSettings


def _help(name: str) -> str:
    from dataclasses import fields

    text = next(f.metadata["help"] for f in fields(S) if f.name == name)
    return text if "[default:" in text else describe(S, name, text)


def command(
    tomograms: Annotated[list[Path], typer.Argument(help="Tomograms (MRC files or folders of them).")],
    coords: Annotated[
        list[Path], typer.Option("--coords", help="Coordinate file(s): .star (RELION 4/5), .csv/.tsv, IMOD .mod.")
    ],
    output: Annotated[Path, typer.Option("-o", "--output", help="Output HDF5 dataset of subtomograms.")],
    box: Annotated[int | None, typer.Option(help=_help("box"))] = None,
    voxel_size: Annotated[float | None, typer.Option("--voxel-size", help=_help("voxel_size"))] = None,
    input_voxel_size: Annotated[
        float | None, typer.Option("--input-voxel-size", help=_help("input_voxel_size"))
    ] = None,
    invert: Annotated[bool | None, typer.Option("--invert/--no-invert", help=_help("invert"))] = None,
    border: Annotated[str | None, typer.Option(help=_help("border"))] = None,
    centre: Annotated[str | None, typer.Option(help=_help("centre"))] = None,
    scale: Annotated[float | None, typer.Option(help=_help("scale"))] = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    setup_logging(verbose)
    with cli_errors(NAME):
        from rich.table import Table

        from voxuda_cli.config import resolve_settings, settings_to_dict
        from voxuda_cli.extract import plan_extraction, write_subtomograms
        from voxuda_cli.io.dataset import provenance

        settings = resolve_settings(
            ExtractSettings,
            config,
            NAME,
            box=box,
            voxel_size=voxel_size,
            input_voxel_size=input_voxel_size,
            invert=invert,
            border=border,
            centre=centre,
            scale=scale,
        )
        plan = plan_extraction(list(tomograms), list(coords), settings)
        origin = provenance(NAME, settings_to_dict(settings), [str(p) for p in [*tomograms, *coords]])
        with progress_bar() as bar:
            task = bar.add_task(NAME, total=plan.total, status="")
            summary = write_subtomograms(output, plan, origin, lambda n, name: bar.update(task, advance=n, status=name))
        table = Table(title=f"extract -> {summary['output']} ({summary['box']}^3 at {summary['voxel_size']:.3f} A)")
        columns = ("name", "shape", "voxel_size", "picks", "extracted", "padded", "skipped_border", "skipped_outside")
        for column in columns:
            table.add_column(column, justify="left" if column == "name" else "right")
        for record in summary["tomograms"]:
            shape = "x".join(str(n) for n in record["shape"])
            table.add_row(record["name"], shape, *(str(record[c]) for c in columns[2:]))
        emit(summary, as_json, table)
