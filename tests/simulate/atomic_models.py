"""Small atomic models written on the fly (tests must not need ../shared/structures)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

PROTEIN_DENSITY = 0.81  # Da / A^3
ALA_HEAVY = (("N", "N"), ("CA", "C"), ("C", "C"), ("O", "O"), ("CB", "C"))
ALA_UNITED_MASS = 14.007 + 3 * 12.011 + 15.999 + 5 * 1.008  # in a chain: 5 hydrogens


def build_structure(positions: np.ndarray, extra_hetero: bool = True, hydrogens: bool = True):  # type: ignore[no-untyped-def]
    """A chain of ALA residues, five heavy atoms each at ``positions`` (N x 5, 3), plus a water,
    a ligand and one hydrogen per residue that the reader must drop."""
    import gemmi

    structure = gemmi.Structure()
    structure.name = "test"
    chain = gemmi.Chain("A")
    for index, atoms in enumerate(positions.reshape(-1, 5, 3)):
        residue = gemmi.Residue()
        residue.name = "ALA"
        residue.seqid = gemmi.SeqId(index + 1, " ")
        residue.entity_type = gemmi.EntityType.Polymer
        named = list(ALA_HEAVY) + ([("H", "H")] if hydrogens else [])
        for (name, element), position in zip(named, list(atoms) + [atoms[0] + 1.0]):
            atom = gemmi.Atom()
            atom.name = name
            atom.element = gemmi.Element(element)
            atom.pos = gemmi.Position(*map(float, position))
            atom.occ = 1.0
            residue.add_atom(atom)
        chain.add_residue(residue)
    if extra_hetero:
        for number, (name, atom_name, element) in enumerate((("HOH", "O", "O"), ("ATP", "PA", "P"))):
            residue = gemmi.Residue()
            residue.name = name
            residue.seqid = gemmi.SeqId(9000 + number, " ")
            residue.het_flag = "H"
            atom = gemmi.Atom()
            atom.name = atom_name
            atom.element = gemmi.Element(element)
            atom.pos = gemmi.Position(500.0, 500.0, 500.0)  # far away: would break the box check if kept
            residue.add_atom(atom)
            chain.add_residue(residue)
    model = gemmi.Model("1")
    model.add_chain(chain)
    structure.add_model(model)
    structure.setup_entities()
    return structure


def ball_positions(radius: float, rng: np.random.Generator, centre: tuple[float, float, float]) -> np.ndarray:
    """ALA atoms filling a ball at protein density (5 atoms per residue)."""
    residues = int(round(4 / 3 * np.pi * radius**3 * PROTEIN_DENSITY / ALA_UNITED_MASS))
    points = rng.uniform(-radius, radius, size=(residues * 12, 3))
    points = points[np.linalg.norm(points, axis=1) <= radius][: residues * 5]
    return points + np.asarray(centre)


def write_ball_file(path: Path, radius: float = 30.0, centre: tuple[float, float, float] = (5.0, -3.0, 12.0)) -> Path:
    """A uniform-density ball model as PDB (.pdb), gzipped PDB (.gz) or mmCIF (.cif)."""
    import gzip

    structure = build_structure(ball_positions(radius, np.random.default_rng(7), centre))
    if path.suffix == ".cif":
        structure.make_mmcif_document().write_file(str(path))
    elif path.suffix == ".gz":
        path.write_bytes(gzip.compress(structure.make_pdb_string().encode()))
    else:
        path.write_text(structure.make_pdb_string())
    return path
