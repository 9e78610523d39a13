"""Fixtures of the simulation tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.simulate.atomic_models import write_ball_file


@pytest.fixture
def write_ball(tmp_path: Path) -> Callable[..., Path]:
    """write_ball(radius, name, fmt="pdb"|"cif"|"pdb.gz", centre) -> path of a uniform-density ball model."""

    def make(radius: float = 30.0, name: str = "ball", fmt: str = "pdb", centre=(5.0, -3.0, 12.0)) -> Path:  # type: ignore[no-untyped-def]
        return write_ball_file(tmp_path / f"{name}.{fmt}", radius, centre)

    return make
