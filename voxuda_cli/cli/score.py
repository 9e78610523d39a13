"""Score predicted masks against ground truth: per-sample IoU and Dice, means per class, voxel-pooled.

PRED and GT are datasets (an HDF5 dataset with /masks, or MRC files / a folder of MRC files, read
as masks > --mask-threshold), matched by sample name. Both-empty masks score 1.0.

Example: voxuda score pred.h5 target.h5 --json
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from voxuda_cli.cli.common import PreviewOpt, emit, fmt
from voxuda_cli.cli.options import param, settings_command
from voxuda_cli.metrics import ScoreSettings

NAME = "score"
SETTINGS = ScoreSettings

PredictionArg = Annotated[Path, typer.Argument(help="Predicted masks: HDF5 dataset, MRC file or folder.")]
TruthArg = Annotated[Path, typer.Argument(help="Ground-truth masks: HDF5 dataset, MRC file or folder.")]
CsvOpt = Annotated[Path | None, typer.Option("--csv", help="Also write per-sample scores as CSV. [default: off]")]


def run(
    settings: ScoreSettings,
    prediction: Path,
    truth: Path,
    csv: Path | None,
    preview: Path | None,
    as_json: bool,
) -> None:
    from voxuda_cli.io.atomic import atomic_write_text
    from voxuda_cli.io.sources import read_dataset
    from voxuda_cli.metrics import score_datasets

    predicted = read_dataset([prediction], require_masks=True, mask_threshold=settings.mask_threshold)
    actual = read_dataset([truth], require_masks=True, mask_threshold=settings.mask_threshold)
    report = score_datasets(predicted, actual)
    if preview is not None:
        from voxuda_cli.metrics import save_score_montage

        save_score_montage(preview, report, predicted, actual)
    if csv is not None:
        rows = ["name,class,iou,dice"] + [
            f"{s['name']},{s['class']},{s['iou']:.6f},{s['dice']:.6f}" for s in report["samples"]
        ]
        atomic_write_text(csv, "\n".join(rows) + "\n")
    emit(report, as_json, _table(report, prediction, truth, settings.per_sample))


command = settings_command(
    NAME,
    ScoreSettings,
    run,
    arguments=[param("prediction", PredictionArg), param("truth", TruthArg)],
    extras=[
        param("csv", CsvOpt, None),
        param("preview", PreviewOpt("image / prediction / truth for the best, median and worst samples"), None),
    ],
)


def _table(report: dict[str, Any], prediction: Path, truth: Path, per_sample: bool) -> Any:
    from rich.table import Table

    table = Table(title=f"score: {prediction.name} vs {truth.name} ({report['n']} samples)")
    for column in ("group", "n", "IoU", "Dice"):
        table.add_column(column, justify="left" if column == "group" else "right")
    if per_sample:
        for sample in report["samples"]:
            table.add_row(sample["name"], "1", fmt(sample["iou"]), fmt(sample["dice"]))
        table.add_section()
    for class_name, values in report["per_class"].items():
        table.add_row(f"class {class_name}", str(values["n"]), fmt(values["iou"]), fmt(values["dice"]))
    table.add_section()
    table.add_row("mean (mIoU, Dice)", str(report["n"]), fmt(report["mean"]["iou"]), fmt(report["mean"]["dice"]))
    table.add_row("global (voxel-pooled)", "-", fmt(report["global"]["iou"]), fmt(report["global"]["dice"]))
    return table
