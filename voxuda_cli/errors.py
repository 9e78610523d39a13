"""User-facing errors: the CLI turns these into a one-line message and exit code 2."""

from __future__ import annotations


class VoxudaInputError(ValueError):
    """Bad input a user can fix (a file, an option, a mismatch). The message names what and how."""


class VoxudaWarning(UserWarning):
    """Something suspicious a user should know about, but that does not stop the run."""
