"""Score predicted masks against ground truth: per-sample IoU and Dice, means per class, voxel-pooled.

PRED and GT are datasets (an HDF5 dataset with /masks, or MRC files / a folder of MRC files, read
as masks > 0.5), matched by sample name. Both-empty masks score 1.0.

Example: voxuda score pred.h5 target.h5 --json
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from voxuda_cli.cli.common import JsonOpt, VerboseOpt, cli_errors, emit, fmt, setup_logging

NAME = "score"


def command(
    prediction: Annotated[Path, typer.Argument(help="Predicted masks: HDF5 dataset, MRC file or folder.")],
    truth: Annotated[Path, typer.Argument(help="Ground-truth masks: HDF5 dataset, MRC file or folder.")],
    csv: Annotated[Path | None, typer.Option("--csv", help="Also write per-sample scores as CSV.")] = None,
    per_sample: Annotated[bool, typer.Option("--per-sample", help="List every sample in the table.")] = False,
    preview: Annotated[
        Path | None,
        typer.Option(
            "--preview", help="PNG montage of image / prediction / truth for the best, median and worst samples."
        ),
    ] = None,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    setup_logging(verbose)
    with cli_errors(NAME):
        from rich.table import Table

        from voxuda_cli.io.atomic import atomic_write_text
        from voxuda_cli.io.sources import read_dataset
        from voxuda_cli.metrics import score_datasets

        predicted = read_dataset([prediction], require_masks=True)
        actual = read_dataset([truth], require_masks=True)
        report = score_datasets(predicted, actual)
        if preview is not None:
            from voxuda_cli.metrics import save_score_montage

            save_score_montage(preview, report, predicted, actual)
        if csv is not None:
            rows = ["name,class,iou,dice"] + [
                f"{s['name']},{s['class']},{s['iou']:.6f},{s['dice']:.6f}" for s in report["samples"]
            ]
            atomic_write_text(csv, "\n".join(rows) + "\n")
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
        emit(report, as_json, table)
