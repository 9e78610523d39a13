"""Rebuild the built-in simulation templates (voxuda_cli/simulate/templates/<pdb id>.npz).

Each template is a coarse-grained copy (beads with masses) of a real atomic model; see
voxuda_cli/simulate/structures.py. By default it reads every PDB/mmCIF file in
../shared/structures (relative to the repository); pass files to rebuild only those.

Example: python scripts/build_templates.py /work/shared/structures/*.gz
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from voxuda_cli.simulate.structures import (
    STRUCTURE_SUFFIXES,
    TEMPLATE_BEAD_SPACING,
    save_template,
    template_from_structure,
)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = REPO.parent / "shared" / "structures"
DEFAULT_OUTPUT = REPO / "voxuda_cli" / "simulate" / "templates"


def structure_files(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.name.lower().endswith(STRUCTURE_SUFFIXES)))
        else:
            files.append(path)
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("structures", nargs="*", type=Path, default=[DEFAULT_SOURCE], help="files or folders")
    parser.add_argument("-o", "--output", type=Path, default=DEFAULT_OUTPUT, help="template folder")
    parser.add_argument("--bead-spacing", type=float, default=TEMPLATE_BEAD_SPACING, help="angstrom")
    args = parser.parse_args(argv)
    files = structure_files(args.structures)
    if not files:
        print(f"no structure files in {args.structures}", file=sys.stderr)
        return 2
    args.output.mkdir(parents=True, exist_ok=True)
    total = 0
    for path in files:
        template = template_from_structure(path, bead_spacing=args.bead_spacing)
        target = args.output / f"{template.pdb_id}.npz"
        save_template(target, template)
        size = target.stat().st_size
        total += size
        print(
            f"{template.pdb_id}: {template.n_atoms} atoms -> {template.n_beads} beads, "
            f"{template.mass / 1e3:.0f} kDa, radius {template.radius:.0f} A, {size / 1e3:.0f} kB"
        )
    print(f"{len(files)} templates, {total / 1e6:.2f} MB in {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
