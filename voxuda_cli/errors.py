"""User-facing errors: the CLI turns these into a one-line message and exit code 2."""

from __future__ import annotations


class VoxudaInputError(ValueError):
    """Bad input a user can fix (a file, an option, a mismatch). The message names what and how."""


class VoxudaOutputError(VoxudaInputError):
    """An output could not be written (full disk, quota, read-only folder): the user's side too, exit 2.

    The message names the file and the cause; nothing half-written is left under that name.
    """


def check_format_version(path: object, found: object, supported: int, what: str) -> None:
    """Refuse a file written by a newer voxuda (its format version above the one this voxuda reads)."""
    try:
        version = int(found)  # type: ignore[call-overload]  # any object a file holds; int() raising is the check
    except (TypeError, ValueError):
        raise VoxudaInputError(f"{path}: unreadable {what} format version {found!r}; the file is damaged") from None
    if version > supported:
        raise VoxudaInputError(
            f"{path}: {what} format version {version} is newer than this voxuda reads (up to {supported}); "
            "upgrade voxuda (pip install -U voxuda) to read it"
        )
