"""Segment subtomograms, patchified volumes or whole tomograms with a trained model.

RUN_OR_MODEL is a training run folder (its model.pt) or a model file. INPUT is one HDF5 dataset,
MRC files or folders of MRC files. What comes out depends on -o: X.h5 is a prediction dataset
(/masks, /probabilities with --probabilities, images, names and classes carried); a folder gets
one MRC per sample, per patchified parent (stitched back onto its original grid) or per tomogram;
X.mrc takes a single volume. MRC inputs larger than the model box are predicted whole: Gaussian-
blended sliding windows, streamed from disk in bounded memory, with the input's voxel size and
origin kept. Masks are probability > --threshold; inputs are normalised as in training.

Example: voxuda predict run/ tomo.mrc -o masks/ --overlap 0.5 --tta --min-size 50 --probabilities
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from voxuda_cli.cli.common import (
    ConfigOpt,
    DeviceOpt,
    JsonOpt,
    OutputOpt,
    VerboseOpt,
    cli_errors,
    emit,
    fmt,
    progress_bar,
    setup_logging,
)
from voxuda_cli.config import describe
from voxuda_cli.inference.settings import PredictSettings

NAME = "predict"
S = PredictSettings


def command(
    model: Annotated[Path, typer.Argument(help="Training run folder (with model.pt) or a model file.")],
    inputs: Annotated[list[Path], typer.Argument(help="One HDF5 dataset, MRC files, or folders of MRC files.")],
    output: OutputOpt,
    threshold: Annotated[
        float | None, typer.Option(help=describe(S, "threshold", "Foreground where its probability is above this."))
    ] = None,
    probabilities: Annotated[
        bool | None,
        typer.Option(
            "--probabilities/--no-probabilities",
            help=describe(S, "probabilities", "Also write foreground probabilities (_probabilities.mrc)."),
        ),
    ] = None,
    overlap: Annotated[
        float | None, typer.Option(help=describe(S, "overlap", "Sliding windows: fraction shared by neighbours."))
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", help=describe(S, "batch_size", "Windows per forward pass."))
    ] = None,
    tta: Annotated[
        bool | None,
        typer.Option("--tta/--no-tta", help=describe(S, "tta", "Average the 8 flips of every window (8x slower).")),
    ] = None,
    min_size: Annotated[
        int | None,
        typer.Option("--min-size", help=describe(S, "min_size", "Remove components smaller than this (voxels).")),
    ] = None,
    normalise: Annotated[
        str | None,
        typer.Option(
            help=describe(S, "normalise", "Whole tomograms: z-score each window (as training) or the tomogram once.")
        ),
    ] = None,
    use: Annotated[
        str | None, typer.Option(help=describe(S, "use", "Weights of the model file: teacher or student."))
    ] = None,
    preview: Annotated[
        Path | None, typer.Option("--preview", help="Also save a PNG montage: input / probability / mask.")
    ] = None,
    device: DeviceOpt = None,
    amp: Annotated[
        bool | None, typer.Option("--amp/--no-amp", help=describe(S, "amp", "Mixed precision on CUDA."))
    ] = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    setup_logging(verbose)
    with cli_errors(NAME):
        from voxuda_cli.cli.common import log
        from voxuda_cli.config import resolve_settings, settings_to_dict
        from voxuda_cli.inference.predictor import Predictor
        from voxuda_cli.inference.run import describe_inputs, plan_prediction
        from voxuda_cli.io.dataset import provenance

        settings = resolve_settings(
            PredictSettings,
            config,
            NAME,
            threshold=threshold,
            probabilities=probabilities,
            overlap=overlap,
            batch_size=batch_size,
            tta=tta,
            min_size=min_size,
            normalise=normalise,
            use=use,
            device=device,
            amp=amp,
        )
        predictor = Predictor(model, settings)
        origin = provenance(NAME, settings_to_dict(settings), [str(model), *(str(p) for p in inputs)])
        job = plan_prediction(predictor, list(inputs), output, origin)
        log.info("%s on %s", describe_inputs(job), predictor.device)
        with progress_bar() as bar:
            task = bar.add_task(NAME, total=job.total, status="")
            summary = job.run(lambda n, what: bar.update(task, advance=n, status=what), preview)
        emit(summary, as_json, _table(summary))


def _table(summary: dict[str, Any]) -> Table:
    table = Table(title=f"predict -> {summary['output']} ({summary['seconds']:.1f} s on {summary['device']})")
    for column in ("volume", "shape", "windows", "foreground %", "Mvoxel/s"):
        table.add_column(column, justify="left" if column == "volume" else "right")
    volumes = summary["volumes"]
    shown = volumes if len(volumes) <= 20 else volumes[:10]
    for record in shown:
        table.add_row(
            record["name"],
            "x".join(str(n) for n in record["shape"]),
            str(record.get("windows", "-")),
            fmt(100 * record["foreground_fraction"], 2),
            fmt(record.get("mvoxel_per_s"), 3),
        )
    if len(volumes) > len(shown):
        table.add_row(f"... {len(volumes) - len(shown)} more", "", "", "", "")
    table.add_section()
    table.add_row("all", "", "", fmt(100 * summary["foreground_fraction"], 2), "")
    return table
