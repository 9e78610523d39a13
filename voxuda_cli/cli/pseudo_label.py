"""(pseudo-label: not available yet; issue 6 builds it.)"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from voxuda_cli.cli.common import not_available

NAME = "pseudo-label"


def command(
    inputs: Annotated[list[Path] | None, typer.Argument(help="Inputs.")] = None,
) -> None:
    not_available(NAME, "issue 6")
