"""Estimate the target noise level sigma_t (the Noise Generation Module) from target volumes.

Draws --n-sampled volumes (seeded), z-scores each, keeps the --keep-rate fraction of highest-frequency
Fourier coefficients and takes the variance of what remains; sigma_t^2 is the mean over the sampled
volumes. Prints sigma_t and every sampled volume's own sigma (with min, median and max), which shows
how much the noise varies across the target set. `-o noise.json` saves the estimate for
`voxuda train --noise noise.json`. INPUT: one HDF5 dataset, MRC files or folders (any shapes).

Example: voxuda estimate-noise target.h5 -o noise.json
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from voxuda_cli.cli.common import ConfigOpt, JsonOpt, VerboseOpt, cli_errors, emit, setup_logging
from voxuda_cli.config import describe
from voxuda_cli.filters.noise import NoiseSettings

NAME = "estimate-noise"


def command(
    inputs: Annotated[list[Path], typer.Argument(help="Target volumes: one HDF5 dataset, MRC files or folders.")],
    n_sampled: Annotated[
        int | None,
        typer.Option(
            "--n-sampled",
            help=describe(NoiseSettings, "n_sampled", "Volumes to draw (all of them, with a warning, if fewer)."),
        ),
    ] = None,
    keep_rate: Annotated[
        float | None,
        typer.Option(
            "--keep-rate",
            help=describe(NoiseSettings, "keep_rate", "Fraction of Fourier coefficients kept (highest frequencies)."),
        ),
    ] = None,
    seed: Annotated[
        int | None, typer.Option("--seed", help=describe(NoiseSettings, "seed", "Seed of the volume draw."))
    ] = None,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Also write the estimate as JSON (for train --noise).")
    ] = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    setup_logging(verbose)
    with cli_errors(NAME):
        import numpy as np
        from rich.table import Table

        from voxuda_cli.cli.common import fmt, stdout_console
        from voxuda_cli.config import resolve_settings
        from voxuda_cli.filters.apply import estimate_noise_files

        settings = resolve_settings(NoiseSettings, config, NAME, n_sampled=n_sampled, keep_rate=keep_rate, seed=seed)
        settings.validate()
        estimate = estimate_noise_files(inputs, settings)
        if output is not None:
            estimate.save(output)
        sigmas = estimate.sample_sigmas()
        table = Table(title=f"estimate-noise: {estimate.n_sampled} volumes, keep_rate {estimate.keep_rate}")
        table.add_column("volume")
        table.add_column("sigma", justify="right")
        for name, sigma in estimate.samples:
            table.add_row(name, fmt(sigma, 4))
        table.add_section()
        for label, value in (("min", sigmas.min()), ("median", np.median(sigmas)), ("max", sigmas.max())):
            table.add_row(label, fmt(float(value), 4))
        table.add_row("sigma_t", fmt(estimate.sigma, 4))
        if not as_json:
            stdout_console.print(f"sigma_t = {estimate.sigma:.4f} (variance {estimate.variance:.4f})", highlight=False)
        emit(estimate.to_dict(), as_json, table)
