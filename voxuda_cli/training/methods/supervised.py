"""supervised: the upper bound; L_seg on the labelled target itself (--tgt with /masks)."""

from __future__ import annotations

from voxuda_cli.training.methods import register_method
from voxuda_cli.training.methods.source_only import SourceOnly


@register_method
class Supervised(SourceOnly):
    name = "supervised"
    summary = "Fully supervised upper bound: L_seg on a labelled --tgt."
    labelled_option = "--tgt"
