"""What every subcommand shares: options, error handling (exit 2), output (table or JSON), progress."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from voxuda_cli import signals
from voxuda_cli.errors import VoxudaInputError

stderr_console = Console(stderr=True)
stdout_console = Console()
log = logging.getLogger("voxuda")

EXIT_BAD_INPUT = 2
_UNWRAPPED = 400  # columns a table may take where stdout is not a terminal

OutputOpt = Annotated[Path, typer.Option("-o", "--output", help="Output file or folder.")]
ModelArg = Annotated[Path, typer.Argument(help="Training run folder (with model.pt) or a model file.")]
InputsArg = Annotated[list[Path], typer.Argument(help="One HDF5 dataset, MRC files, or folders of MRC files.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout (logs go to stderr).")]
ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", help="TOML file of settings (a table named after the command, or top-level keys); options win."
    ),
]
VerboseOpt = Annotated[bool, typer.Option("-v", "--verbose", help="More log output on stderr.")]


def PreviewOpt(what: str) -> Any:  # noqa: N802 (an annotation, like the ones above)
    """``--preview FILE.png``: a montage of central slices of what the command read and wrote."""
    return Annotated[Path | None, typer.Option("--preview", help=f"Also save a PNG montage: {what}. [default: off]")]


def setup_logging(verbose: bool = False) -> None:
    level = logging.DEBUG if verbose else logging.INFO
    root = logging.getLogger("voxuda")
    root.handlers.clear()
    root.addHandler(RichHandler(console=stderr_console, show_path=False, show_time=False, markup=False))
    root.setLevel(level)
    root.propagate = False


@contextlib.contextmanager
def cli_errors(command: str) -> Iterator[None]:
    """Turn a VoxudaInputError into one line on stderr and exit code 2 (no traceback).

    SIGINT, SIGTERM and SIGHUP stop the command alike (voxuda_cli.signals): temporary files are
    removed and the exit code is 128 + the signal number.
    """
    try:
        with signals.handled():
            yield
    except VoxudaInputError as exc:
        stderr_console.print(f"[bold red]voxuda {command}: error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except KeyboardInterrupt as exc:
        stderr_console.print(f"voxuda {command}: {signals.describe(exc)}", highlight=False, soft_wrap=True)
        raise typer.Exit(signals.exit_code(exc)) from None
    finally:
        from voxuda_cli.io.atomic import remove_live_temporaries

        remove_live_temporaries()  # whatever a signal in the middle of a cleanup left


def emit(result: dict[str, Any], as_json: bool, table: Table | None = None) -> None:
    """Results: JSON on stdout with ``--json``, else a rich table on stdout."""
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2, default=_json_default) + "\n")
        sys.stdout.flush()
    elif table is not None:
        # Into a file, a pipe or a CI log a table keeps its natural width: rich's default of 80
        # columns there would cut its headers. A terminal wraps it to its own width.
        console = stdout_console if sys.stdout.isatty() else Console(width=_UNWRAPPED, soft_wrap=True)
        console.print(table)


def _json_default(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


class MvoxelColumn(ProgressColumn):
    """Done and total in Mvoxel, and the rate in Mvoxel/s (for work counted in voxels)."""

    def render(self, task: Task) -> Text:
        rate = f"{task.speed / 1e6:.2f} Mvoxel/s" if task.speed else "- Mvoxel/s"
        total = f"{task.total / 1e6:.1f}" if task.total is not None else "?"
        return Text(f"{task.completed / 1e6:.1f}/{total} Mvoxel {rate}")


def progress_bar(transient: bool = False, voxels: bool = False) -> Progress:
    """A rich progress bar on stderr (stdout stays clean for tables and JSON); ``voxels``: counts voxels."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MvoxelColumn() if voxels else MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=stderr_console,
        transient=transient,
    )


def bar_progress(bar: Progress, task: Any) -> Any:
    """A voxuda_cli.progress.Progress callback that advances ``task`` of the rich ``bar``."""

    def advance(n: int, status: str = "", total: int | None = None) -> None:
        extra: dict[str, Any] = {"status": status} if status else {}
        if total is not None:
            extra["total"] = total
        bar.update(task, advance=n, **extra)

    return advance


def fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"
