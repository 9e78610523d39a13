"""Train VoxResNet with Vox-UDA (or a baseline: source-only, supervised, dann) into a run directory.

SRC is labelled (masks), TGT unlabelled; both are datasets (an HDF5 dataset, MRC files or a
folder of MRC files; repeat --src/--tgt for several MRC files). Every volume is z-scored on its
own. The run directory gets config.toml (the resolved settings), model.pt (what predict and
pseudo-label load), checkpoint.pt (every epoch; --resume continues from it), metrics.jsonl and
curves.png. Defaults are the paper's (300 epochs, batch 16, Adam 1e-3, x0.1 every 100 epochs).
--resume starts from the run's config.toml (unless --config is given); only --epochs, --device,
--amp, --threads and --workers may differ from it.

Several processes: torchrun --nproc_per_node=N -m voxuda_cli train ... (DDP; gloo on CPU, nccl on
CUDA, one GPU per process; --batch-size is the global batch; rank 0 writes).

Example: voxuda train --src source.h5 --tgt target.h5 -o run/ --noise noise.json --epochs 50
then:    voxuda train -o run/ --resume --epochs 80
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer

from voxuda_cli.cli.common import (
    ConfigOpt,
    DeviceOpt,
    JsonOpt,
    SeedOpt,
    VerboseOpt,
    cli_errors,
    emit,
    fmt,
    progress_bar,
    setup_logging,
)
from voxuda_cli.config import describe
from voxuda_cli.filters.denoisers import names as denoiser_names
from voxuda_cli.training.methods import names as method_names
from voxuda_cli.training.settings import TrainSettings

NAME = "train"
S = TrainSettings

Datasets = list[Path] | None


def command(
    output: Annotated[Path, typer.Option("-o", "--output", help="Run directory.")],
    src: Annotated[Datasets, typer.Option("--src", help="Labelled source dataset (.h5 with /masks).")] = None,
    tgt: Annotated[Datasets, typer.Option("--tgt", help="Unlabelled target dataset (labelled for supervised).")] = None,
    val: Annotated[
        Datasets, typer.Option("--val", help="Validation dataset; Dice/IoU per epoch if it has masks.")
    ] = None,
    method: Annotated[
        str | None, typer.Option(help=describe(S, "method", f"Training method: {', '.join(method_names())}."))
    ] = None,
    denoiser: Annotated[
        str | None, typer.Option(help=describe(S, "denoiser", f"Pseudo-label denoiser: {', '.join(denoiser_names())}."))
    ] = None,
    sigma_d: Annotated[float | None, typer.Option(help=describe(S, "sigma_d", "(I)BF spatial sigma."))] = None,
    sigma_r: Annotated[float | None, typer.Option(help=describe(S, "sigma_r", "(I)BF range sigma."))] = None,
    keep_rate: Annotated[
        float | None, typer.Option(help=describe(S, "keep_rate", "NGM: fraction of high frequencies kept."))
    ] = None,
    n_sampled: Annotated[
        int | None, typer.Option(help=describe(S, "n_sampled", "NGM: target volumes sampled for sigma_t."))
    ] = None,
    noise: Annotated[
        Path | None, typer.Option(help="A saved estimate (voxuda estimate-noise -o) instead of estimating here.")
    ] = None,
    epochs: Annotated[int | None, typer.Option(help=describe(S, "epochs", "Passes over the labelled set."))] = None,
    batch_size: Annotated[
        int | None, typer.Option(help=describe(S, "batch_size", "Batch size (global under torchrun)."))
    ] = None,
    lr: Annotated[float | None, typer.Option(help=describe(S, "lr", "Adam learning rate."))] = None,
    lr_step: Annotated[int | None, typer.Option(help=describe(S, "lr_step", "Epochs between lr decays."))] = None,
    lr_gamma: Annotated[float | None, typer.Option(help=describe(S, "lr_gamma", "Learning-rate decay."))] = None,
    width: Annotated[int | None, typer.Option(help=describe(S, "width", "VoxResNet width C."))] = None,
    eta: Annotated[float | None, typer.Option(help=describe(S, "eta", "Pseudo-label confidence threshold."))] = None,
    ema: Annotated[float | None, typer.Option(help=describe(S, "ema", "Teacher EMA decay."))] = None,
    seg_weight: Annotated[float | None, typer.Option(help=describe(S, "seg_weight", "Weight of L_seg."))] = None,
    con_weight: Annotated[float | None, typer.Option(help=describe(S, "con_weight", "Weight of L_con."))] = None,
    dis_weight: Annotated[float | None, typer.Option(help=describe(S, "dis_weight", "Weight of L_dis."))] = None,
    pl_weight: Annotated[float | None, typer.Option(help=describe(S, "pl_weight", "Weight of L_pl."))] = None,
    con_lambdas: Annotated[
        tuple[float, float, float, float] | None,
        typer.Option(help=describe(S, "con_lambdas", "L_con weights of f_c, f_v2, f_v4, f_v6.")),
    ] = None,
    ramp_epochs: Annotated[
        int | None, typer.Option(help="Horizon of the DANN reversal ramp (epochs). [default: --epochs at start]")
    ] = None,
    pl_warmup: Annotated[
        float | None,
        typer.Option(
            "--pl-warmup",
            help=describe(S, "pl_warmup", "Epochs over which the L_pl weight ramps up (Mean Teacher); 0 = off."),
        ),
    ] = None,
    augment: Annotated[
        bool | None,
        typer.Option("--augment/--no-augment", help=describe(S, "augment", "Random flips of labelled volumes.")),
    ] = None,
    invert: Annotated[
        bool | None, typer.Option("--invert/--no-invert", help=describe(S, "invert", "Flip contrast (dark protein)."))
    ] = None,
    strict: Annotated[
        bool | None,
        typer.Option("--strict/--no-strict", help=describe(S, "strict", "Refuse a target voxel size > 5 % off.")),
    ] = None,
    seed: SeedOpt = None,
    device: DeviceOpt = None,
    amp: Annotated[
        bool | None, typer.Option("--amp/--no-amp", help=describe(S, "amp", "Mixed precision (CUDA only)."))
    ] = None,
    threads: Annotated[int | None, typer.Option(help="Torch CPU threads. [default: torch's]")] = None,
    workers: Annotated[int | None, typer.Option(help=describe(S, "workers", "Data-loading processes."))] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run from its checkpoint.pt.")] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Start again in a run directory that holds a previous run.")
    ] = False,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    setup_logging(verbose)
    with cli_errors(NAME):
        from voxuda_cli.config import resolve_settings
        from voxuda_cli.training import train
        from voxuda_cli.training.distributed import DistributedContext

        if resume and config is None and (output / "config.toml").is_file():
            config = output / "config.toml"  # a resume starts from the run's own settings; options still win
        settings = resolve_settings(
            TrainSettings,
            config,
            NAME,
            src=tuple(src) if src else None,
            tgt=tuple(tgt) if tgt else None,
            val=tuple(val) if val else None,
            method=method,
            denoiser=denoiser,
            sigma_d=sigma_d,
            sigma_r=sigma_r,
            keep_rate=keep_rate,
            n_sampled=n_sampled,
            noise=noise,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            lr_step=lr_step,
            lr_gamma=lr_gamma,
            width=width,
            eta=eta,
            ema=ema,
            seg_weight=seg_weight,
            con_weight=con_weight,
            dis_weight=dis_weight,
            pl_weight=pl_weight,
            con_lambdas=con_lambdas,
            ramp_epochs=ramp_epochs,
            pl_warmup=pl_warmup,
            augment=augment,
            invert=invert,
            strict=strict,
            seed=seed,
            device=device,
            amp=amp,
            threads=threads,
            workers=workers,
        )
        is_main = DistributedContext.from_env().is_main
        if not is_main:  # one voice: the other processes only speak up about problems
            logging.getLogger("voxuda").setLevel(logging.WARNING)
        with progress_bar() as bar:
            reporter = EpochProgress(bar) if is_main else None
            summary = train(settings, output, resume=resume, overwrite=overwrite, progress=reporter)
        if is_main:
            emit(summary, as_json, summary_table(summary))


class EpochProgress:
    """The rich bar: one line for the run (epochs), one for the current epoch with its running losses."""

    def __init__(self, bar: Any) -> None:
        self.bar = bar
        self.run_task: Any = None
        self.epoch_task: Any = None

    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None:
        if self.run_task is None:
            self.run_task = self.bar.add_task("train", total=epochs, completed=epoch - 1, status="")
            self.epoch_task = self.bar.add_task(f"epoch {epoch}", total=steps, status="")
        self.bar.reset(self.epoch_task, total=steps, description=f"epoch {epoch}", status="")

    def advance(self, running: Mapping[str, float]) -> None:
        shown = [k for k in ("loss", "seg", "con", "dis", "pl", "pl_coverage") if k in running]
        self.bar.update(self.epoch_task, advance=1, status="  ".join(f"{k} {running[k]:.3f}" for k in shown))

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
    for key, value in summary["final"].items():
        table.add_row(f"final {key}", fmt(value, 4))
    for key, value in summary["pseudo_labels"].items():
        table.add_row(key.replace("_", " "), fmt(value, 3))
    for key, value in (summary.get("validation") or {}).items():
        table.add_row(key.replace("_", " "), fmt(value, 3))
    table.add_row("seconds", fmt(summary["seconds"], 1))
    if summary.get("samples_per_s") is not None:
        table.add_row("samples/s", fmt(summary["samples_per_s"], 2))
    table.add_row("device (processes)", f"{summary['device']} ({summary['processes']})")
    return table
