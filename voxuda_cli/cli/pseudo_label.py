"""Write the teacher's pseudo-labels of a target dataset, exactly as Vox-UDA training makes them.

Each target sample is normalised as in training, denoised (--denoiser; the model file's denoiser
and filter parameters by default, "none" for a raw-input teacher) and segmented by the teacher;
voxels whose class probability is at least --eta are confident, and with --pl-threshold
class-quantile also each class's --pl-keep most confident (over the dataset). Every default is
what the model file recorded from training. OUT.h5 holds
/images (the target as given), /masks (1 = confident foreground, 0 elsewhere), /confidence (the
max class probability) and /params/confident (1 = labelled, 0 = ignored by training). Prints the
coverage (fraction of confident voxels) and the foreground fraction among them; with target
masks, also the pseudo-labels' accuracy on the confident voxels.

Example: voxuda pseudo-label run/ target.h5 -o pseudo.h5 --eta 0.85 --preview pseudo.png
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from voxuda_cli.cli.common import ModelArg, PreviewOpt, bar_progress, emit, fmt, progress_bar
from voxuda_cli.cli.options import param, settings_command
from voxuda_cli.inference.settings import PseudoLabelSettings

NAME = "pseudo-label"
SETTINGS = PseudoLabelSettings

TargetArg = Annotated[
    list[Path], typer.Argument(help="Target dataset: one HDF5 dataset, MRC files or folders (model box).")
]
OutputOpt = Annotated[Path, typer.Option("-o", "--output", help="Output HDF5 dataset of pseudo-labels.")]


def run(
    settings: PseudoLabelSettings, model: Path, target: list[Path], output: Path, preview: Path | None, as_json: bool
) -> None:
    from voxuda_cli.config import settings_to_dict
    from voxuda_cli.errors import VoxudaInputError
    from voxuda_cli.inference.pseudo_labels import (
        make_pseudo_labels,
        pseudo_label_predictor,
        resolve_pseudo_label_settings,
        summarise,
        write_pseudo_labels,
    )
    from voxuda_cli.io.dataset import is_h5_path, provenance
    from voxuda_cli.io.sources import read_dataset

    if not is_h5_path(output):
        raise VoxudaInputError(f"{output}: pseudo-labels are written as an HDF5 dataset; name it .h5")
    predictor = pseudo_label_predictor(model, settings)
    settings = resolve_pseudo_label_settings(settings, predictor.info)
    dataset = read_dataset(target)
    with progress_bar() as bar:
        task = bar.add_task(NAME, total=len(dataset), status=Path(dataset.source).name)
        labels = make_pseudo_labels(predictor, dataset, settings, bar_progress(bar, task))
    origin = provenance(NAME, settings_to_dict(settings), [str(model), *(str(p) for p in target)])
    write_pseudo_labels(output, dataset, labels, settings, origin)
    summary = summarise(dataset, labels, settings, output, str(predictor.model_path))
    if preview is not None:
        _save_preview(preview, dataset, labels)
        summary["preview"] = str(preview)
    emit(summary, as_json, _table(summary))


command = settings_command(
    NAME,
    PseudoLabelSettings,
    run,
    arguments=[param("model", ModelArg), param("target", TargetArg), param("output", OutputOpt)],
    extras=[param("preview", PreviewOpt("target / denoised / confidence / pseudo-label"), None)],
)


def _save_preview(path: Path, dataset: Any, labels: Any) -> None:
    import numpy as np

    from voxuda_cli.plots import save_montage

    picks = np.unique(np.linspace(0, len(dataset) - 1, min(4, len(dataset))).astype(int))
    columns = {
        "target": [dataset.images[i] for i in picks],
        "denoised": labels.denoised_preview,
        "confidence": [labels.confidence[i] for i in picks],
        "pseudo-label": [labels.masks[i] for i in picks],
    }
    save_montage(path, columns, [dataset.names[i] for i in picks], title=f"pseudo-labels, eta {labels.eta}")


def _table(summary: dict[str, Any]) -> Table:
    table = Table(title=f"pseudo-label -> {summary['output']} ({summary['samples']} samples)")
    for column in ("selection", "denoiser", "coverage %", "foreground % of labelled", "accuracy on labelled %"):
        table.add_column(column, justify="right")
    accuracy = summary["accuracy_on_confident"]
    selection = f"eta {fmt(summary['eta'], 3)}"
    if summary["pl_keep"] is not None:
        selection += f" or top {fmt(100 * summary['pl_keep'], 0)} % per class"
    table.add_row(
        selection,
        str(summary["denoiser"]),
        fmt(100 * summary["coverage"], 2),
        fmt(100 * summary["foreground_fraction"], 2),
        fmt(None if accuracy is None else 100 * accuracy, 2),
    )
    return table
