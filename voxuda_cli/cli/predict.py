"""Segment subtomograms, patchified volumes or whole tomograms with a trained model.

RUN_OR_MODEL is a training run folder (its model.pt) or a model file. INPUT is one HDF5 dataset,
MRC files or folders of MRC files. What comes out depends on -o: X.h5 is a prediction dataset
(/masks, /probabilities with --probabilities, images, names and classes carried); a folder gets
one MRC per sample, per patchified parent (stitched back onto its original grid) or per tomogram;
X.mrc takes a single volume. MRC inputs larger than the model box are predicted whole: large
windows (sized by --memory) whose cores tile the tomogram, each voxel computed once with --margin
voxels of context, z-scored by local statistics (--normalise), streamed from disk, with the input's
voxel size and origin kept (--blend gaussian: box-sized windows blended, as MONAI). Masks are
probability > --threshold (--smooth: a blurred expected volume per box, for picked particles).
Inputs whose voxel size differs from the model's by more than 1 % are Fourier-resampled to it and
the result back (outputs keep the input's grid); a header voxel size of 0 or 1.0 A is refused,
--input-voxel-size gives the real one. --paste FOLDER (an extract dataset) also writes one label
MRC per parent tomogram, the masks placed back at their picks. A copick project reads and writes
as CONFIG.json:KEY=VALUE (README, "copick projects"): INPUT copick.json:tomogram=wbp:spacing=10,
-o copick.json:segmentation=ribosome:user=voxuda:session=1.

Example: voxuda predict run/ tomo.mrc -o masks/ --memory 2 --min-size 50 --probabilities
         voxuda predict run/ subtomos.h5 -o pred.h5 --smooth 36 --paste segmentations/
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from voxuda_cli.cli.common import InputsArg, ModelArg, OutputOpt, PreviewOpt, bar_progress, emit, fmt, progress_bar
from voxuda_cli.cli.options import param, settings_command
from voxuda_cli.inference.settings import PredictSettings

NAME = "predict"
SETTINGS = PredictSettings


PasteOpt = Annotated[
    Path | None,
    typer.Option(
        "--paste",
        help="For an extract dataset: also put the masks back, one <tomogram>.mrc per parent tomogram in this folder.",
    ),
]


def run(
    settings: PredictSettings,
    model: Path,
    inputs: list[Path],
    output: Path,
    preview: Path | None,
    paste: Path | None,
    as_json: bool,
) -> None:
    from voxuda_cli.cli.common import log
    from voxuda_cli.config import settings_to_dict
    from voxuda_cli.inference.predictor import Predictor
    from voxuda_cli.inference.run import describe_inputs, plan_prediction
    from voxuda_cli.io.dataset import provenance

    predictor = Predictor(model, settings)
    origin = provenance(NAME, settings_to_dict(settings), [str(model), *(str(p) for p in inputs)])
    job = plan_prediction(predictor, list(inputs), output, origin, paste)
    log.info("%s on %s", describe_inputs(job), predictor.device)
    with progress_bar(voxels=True) as bar:
        task = bar.add_task(NAME, total=job.total, status="")
        summary = job.run(bar_progress(bar, task), preview)
    emit(summary, as_json, _table(summary))


command = settings_command(
    NAME,
    PredictSettings,
    run,
    arguments=[param("model", ModelArg), param("inputs", InputsArg), param("output", OutputOpt)],
    extras=[param("preview", PreviewOpt("input / probability / mask"), None), param("paste", PasteOpt, None)],
)


def _table(summary: dict[str, Any]) -> Table:
    title = (
        f"predict -> {summary['output']} ({summary['seconds']:.1f} s on {summary['device']} in {summary['numerics']}, "
        f"{summary['mvoxel_per_s']:.2f} Mvoxel/s, peak memory {summary['peak_memory_mb']:.0f} MB)"
    )
    table = Table(title=title)
    for column in ("volume", "shape", "window", "windows", "foreground %", "Mvoxel/s"):
        table.add_column(column, justify="left" if column == "volume" else "right")
    volumes = summary["volumes"]
    shown = volumes if len(volumes) <= 20 else volumes[:10]
    for record in shown:
        table.add_row(
            record["name"],
            "x".join(str(n) for n in record["shape"]),
            "x".join(str(n) for n in record.get("window", [])) or "-",
            str(record.get("windows", "-")),
            fmt(100 * record["foreground_fraction"], 2),
            fmt(record.get("mvoxel_per_s"), 3),
        )
    if len(volumes) > len(shown):
        table.add_row(f"... {len(volumes) - len(shown)} more", "", "", "", "", "")
    table.add_section()
    table.add_row("all", "", "", "", fmt(100 * summary["foreground_fraction"], 2), fmt(summary["mvoxel_per_s"], 3))
    elsewhere = [path for path in summary.get("outputs", []) if not _inside(Path(path), Path(summary["output"]))]
    if elsewhere:  # --paste's label volumes, --preview
        table.caption = "also wrote: " + ", ".join(elsewhere)
    return table


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents
