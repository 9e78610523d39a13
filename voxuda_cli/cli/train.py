"""Train VoxResNet with Vox-UDA (or one of the baselines listed below) into a run directory.

SRC is labelled (masks), TGT unlabelled; both are datasets (an HDF5 dataset, MRC files or a
folder of MRC files; repeat --src/--tgt for several MRC files). Every volume is z-scored on its
own. The run directory gets config.toml (the resolved settings), model.pt (what predict and
pseudo-label load), checkpoint.pt (every epoch; --resume continues from it), metrics.jsonl and
curves.png. The schedule's defaults are the paper's (300 epochs, batch 16, Adam 1e-3, x0.1 every
100 epochs: for a GPU); how the loss terms are scheduled is the --recipe (voxuda by default,
chosen by measurement; paper for the paper's literal setting; docs/METHOD.md).
--resume starts from the run's config.toml (unless --config is given); only --epochs, --device,
--amp, --threads, --workers and --checkpoint-signal may differ from it. On SIGTERM or SIGUSR1 (a
scheduler's time limit or preemption; see --checkpoint-signal) the run writes checkpoint.pt at
the current step and exits 128 + the signal number; --resume then continues bit for bit. A second
train into a run directory that a live process is writing is refused.

Several processes: torchrun --nproc_per_node=N -m voxuda_cli train ... (DDP; gloo on CPU, nccl on
CUDA, one GPU per process; --batch-size is the global batch; rank 0 writes).

Example: voxuda train --src source.h5 --tgt target.h5 -o run/ --epochs 50
then:    voxuda train -o run/ --resume --epochs 80
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer

from voxuda_cli.cli.common import emit, fmt, progress_bar
from voxuda_cli.cli.options import param, settings_command
from voxuda_cli.training.methods import get_method, names
from voxuda_cli.training.settings import TrainSettings

NAME = "train"
# one line per registered method (its ``summary``), below the docstring
HELP = (
    (__doc__ or "")
    + "\n\b\nMethods (--method):\n"
    + "\n".join(f"  {name:12s} {get_method(name).summary}" for name in names())
)
SETTINGS = TrainSettings

OutputOpt = Annotated[Path, typer.Option("-o", "--output", help="Run directory.")]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="Continue the run from its checkpoint.pt.")]
OverwriteOpt = Annotated[
    bool, typer.Option("--overwrite", help="Start again in a run directory that holds a previous run.")
]


def resolve(
    settings_cls: type, config: Path | None, name: str, values: dict[str, Any], extras: dict[str, Any]
) -> TrainSettings:
    """A --resume starts from the run's own config.toml (unless --config is given); options still win."""
    from voxuda_cli.config import resolve_settings

    run_config = Path(extras["output"]) / "config.toml"
    if extras["resume"] and config is None and run_config.is_file():
        config = run_config
    return resolve_settings(TrainSettings, config, name, **values)


def run(settings: TrainSettings, output: Path, resume: bool, overwrite: bool, as_json: bool) -> None:
    from voxuda_cli.training import train
    from voxuda_cli.training.distributed import DistributedContext

    is_main = DistributedContext.from_env().is_main
    if not is_main:  # one voice: the other processes only speak up about problems
        logging.getLogger("voxuda").setLevel(logging.WARNING)
    reporter = EpochProgress(progress_bar()) if is_main else None
    try:
        summary = train(settings, output, resume=resume, overwrite=overwrite, progress=reporter)
    finally:
        if reporter is not None:
            reporter.close()
    if is_main:
        emit(summary, as_json, summary_table(summary))


command = settings_command(
    NAME,
    TrainSettings,
    run,
    arguments=[param("output", OutputOpt)],
    extras=[param("resume", ResumeOpt, False), param("overwrite", OverwriteOpt, False)],
    resolve=resolve,
)


class EpochProgress:
    """The rich bar: one line for the run (epochs), one for the current epoch with its running losses."""

    def __init__(self, bar: Any) -> None:
        self.bar = bar
        self.run_task: Any = None
        self.epoch_task: Any = None

    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None:
        if self.run_task is None:
            # shown from the first epoch on: a run refused while it is prepared prints its error alone
            self.bar.start()
            self.run_task = self.bar.add_task("train", total=epochs, completed=epoch - 1, status="")
            self.epoch_task = self.bar.add_task(f"epoch {epoch}", total=steps, status="")
        self.bar.reset(self.epoch_task, total=steps, description=f"epoch {epoch}", status="")

    def advance(self, running: Mapping[str, float]) -> None:
        shown = [k for k in ("loss", "seg", "con", "dis", "pl", "pl_coverage") if k in running]
        self.bar.update(self.epoch_task, advance=1, status="  ".join(f"{k} {running[k]:.3f}" for k in shown))

    def close(self) -> None:
        if self.run_task is not None:
            self.bar.stop()

    def end_epoch(self, record: Mapping[str, Any]) -> None:
        status = f"loss {record.get('loss', float('nan')):.3f}"
        if "val_dice" in record:
            status += f"  val Dice {record['val_dice']:.3f}"
        self.bar.update(self.run_task, advance=1, status=status)


def summary_table(summary: Mapping[str, Any]) -> Any:
    from rich.table import Table

    table = Table(title=f"train --method {summary['method']}: {summary['run_dir']}")
    table.add_column("")
    table.add_column("value", justify="right")
    table.add_row("epochs (run now)", f"{summary['epochs']} ({summary['epochs_run']})")
    table.add_row("labelled samples", str(summary["samples"]))
    if summary.get("target_samples") is not None:
        table.add_row("target samples", str(summary["target_samples"]))
    if summary.get("noise_sigma") is not None:
        table.add_row("NGM sigma_t", fmt(summary["noise_sigma"], 4))
    if summary.get("source_view") is not None:
        coverage = summary.get("spectral_coverage")
        suffix = "" if coverage is None else f" (spectral coverage {100 * coverage:.0f} %)"
        table.add_row("source view", summary["source_view"] + suffix)
    if summary.get("bn_statistics") is not None:
        table.add_row("batch-norm statistics", summary["bn_statistics"])
    for key, value in summary["final"].items():
        table.add_row(f"final {key}", fmt(value, 4))
    for key, value in summary["pseudo_labels"].items():
        table.add_row(key.replace("_", " "), fmt(value, 3))
    for key, value in (summary.get("validation") or {}).items():
        table.add_row(key.replace("_", " "), fmt(value, 3))
    guards = summary.get("guards") or {}
    if guards.get("adversarial_switched_off_at_step") is not None:
        table.add_row("adversarial term", f"off from step {guards['adversarial_switched_off_at_step']} (runaway L_dis)")
    if guards.get("pl_paused_steps"):
        table.add_row("L_pl paused (steps)", str(guards["pl_paused_steps"]))
    chosen = summary.get("checkpoint")
    if chosen is not None:
        held = f"epoch {chosen['epoch']} of {chosen['final_epoch']} (--select {chosen['rule']})"
        table.add_row("model.pt holds", held)
    table.add_row("seconds", fmt(summary["seconds"], 1))
    if summary.get("samples_per_s") is not None:
        table.add_row("samples/s", fmt(summary["samples_per_s"], 2))
    table.add_row("device (processes)", f"{summary['device']} ({summary['processes']})")
    return table
