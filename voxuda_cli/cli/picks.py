"""Particles from segmentations: connected components, instance labels and coordinates out.

SEGMENTATION: masks or probability maps (MRC, OME-Zarr, or a folder of them such as a predict
output; X_probabilities.mrc beside X.mrc gives each particle's mean probability). -o ends in .star
(RELION 5: rlnCenteredCoordinateX/Y/ZAngst and rlnTomoName; --star relion4: voxel coordinates and
rlnMicrographName), .csv/.tsv (x, y, z in voxels) or a copick project's picks
(copick.json:object=NAME:user=U:session=S; its segmentations are read as
copick.json:segmentation=NAME:user=U:session=S). Each row also carries the particle's volume
(voxels and A^3) and mean probability. `voxuda extract --coords` reads them back (the same
--centre). --instances DIR writes X_instances.mrc, each particle numbered 1..N (uint16).

Example: voxuda picks work/masks/ -o picks.star --min-size 200 --meanshift 25 --instances work/instances
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from voxuda_cli.cli.common import bar_progress, emit, progress_bar
from voxuda_cli.cli.options import param, settings_command
from voxuda_cli.picks import PicksSettings

NAME = "picks"
SETTINGS = PicksSettings

InputsArg = Annotated[list[Path], typer.Argument(help="Masks or probability maps: MRC/OME-Zarr files or folders.")]
OutputOpt = Annotated[
    Path, typer.Option("-o", "--output", help="Picks: .star, .csv/.tsv or copick.json:object=NAME:user=U:session=S.")
]
InstancesOpt = Annotated[
    Path | None, typer.Option("--instances", help="Folder for X_instances.mrc label maps. [default: off]")
]


def run(settings: PicksSettings, inputs: list[Path], output: Path, instances: Path | None, as_json: bool) -> None:
    from voxuda_cli.picks import plan_picks, run_picks

    files = plan_picks(inputs, output, settings)  # every input checked before the bar starts
    with progress_bar() as bar:
        task = bar.add_task(NAME, total=len(files), status="")
        summary = run_picks(files, output, settings, instances, bar_progress(bar, task))
    emit(summary, as_json, _table(summary))


command = settings_command(
    NAME,
    PicksSettings,
    run,
    arguments=[param("inputs", InputsArg), param("output", OutputOpt)],
    extras=[param("instances", InstancesOpt, None)],
)


def _table(summary: dict[str, Any]) -> Any:
    from rich.table import Table

    table = Table(title=f"picks -> {summary['output']} ({summary['particles']} particles)")
    for column in ("tomogram", "shape", "particles"):
        table.add_column(column, justify="left" if column == "tomogram" else "right")
    for record in summary["tomograms"]:
        table.add_row(record["name"], "x".join(map(str, record["shape"])), str(record["particles"]))
    return table
