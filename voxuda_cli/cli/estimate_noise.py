"""Estimate the target noise level sigma_t (the Noise Generation Module) from target volumes.

Draws --n-sampled volumes (seeded), z-scores each, keeps the --keep-rate fraction of highest-frequency
Fourier coefficients and takes the variance of what remains; sigma_t^2 is the mean over the sampled
volumes. Prints sigma_t and every sampled volume's own sigma (with min, median and max), which shows
how much the noise varies across the target set. `-o noise.json` saves the estimate for
`voxuda train --recipe paper --noise noise.json` (the NGM's source view). INPUT: one HDF5 dataset,
MRC files or folders (any shapes).

Example: voxuda estimate-noise target.h5 -o noise.json
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from voxuda_cli.cli.common import emit
from voxuda_cli.cli.options import param, settings_command
from voxuda_cli.filters.noise import NoiseSettings

NAME = "estimate-noise"
SETTINGS = NoiseSettings

InputsArg = Annotated[list[Path], typer.Argument(help="Target volumes: one HDF5 dataset, MRC files or folders.")]
OutputOpt = Annotated[
    Path | None, typer.Option("-o", "--output", help="Also write the estimate as JSON (for train --noise).")
]


def run(settings: NoiseSettings, inputs: list[Path], output: Path | None, as_json: bool) -> None:
    import numpy as np
    from rich.table import Table

    from voxuda_cli.cli.common import fmt, stdout_console
    from voxuda_cli.filters.apply import estimate_noise_files

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


command = settings_command(
    NAME, NoiseSettings, run, arguments=[param("inputs", InputsArg)], extras=[param("output", OutputOpt, None)]
)
