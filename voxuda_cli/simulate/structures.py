"""Atomic models -> coarse-grained templates (beads with masses), and the built-in templates.

A template is what the simulator needs of a molecule: bead positions (angstrom, x y z, centred on
the molecule's smallest enclosing sphere, so any rotation about the box centre keeps it inside a
sphere of ``radius``), bead masses (Da) and bead spreads (RMS extent of each bead's atoms along
one axis, angstrom). Beads come from binning atoms into cubic cells of ``bead_spacing`` angstrom
and keeping each cell's mass, centre of mass and second moment, so the density rendered from the
beads at ~10 A voxels matches the one rendered from the atoms (only moments above the second are
lost, far below the voxel size). This is what makes a sample cheap: rotating a few thousand beads
exactly and splatting them is faster and more exact than resampling a fine map.

Masses are united-atom: hydrogens, waters and ligands are dropped (as issue 3 asks), and the mass
of each polymer residue's hydrogens (tabulated by gemmi's residue table, less the two lost on
polymerisation) is spread over that residue's heavy atoms. The protein density 0.81 Da/A^3 used
for the molecular volume counts hydrogens, so the total mass must count them too.
"""

from __future__ import annotations

import dataclasses
import gzip
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from voxuda_cli.errors import VoxudaInputError

TEMPLATE_BEAD_SPACING = 4.0  # angstrom; fine enough for voxels down to ~8 A, small enough to ship
HYDROGEN_MASS = 1.008
_HYDROGENS_LOST_ON_POLYMERISATION = 2  # one water leaves per peptide/phosphodiester bond
_TEMPLATE_PACKAGE = "voxuda_cli.simulate"
_TEMPLATE_FOLDER = "templates"
_ENCLOSING_SPHERE_ITERATIONS = 4000
STRUCTURE_SUFFIXES = (".pdb", ".ent", ".cif", ".mmcif", ".pdb.gz", ".ent.gz", ".cif.gz", ".mmcif.gz")


@dataclass(frozen=True)
class AtomModel:
    """Heavy atoms of model 1 with united-atom masses."""

    positions: np.ndarray  # (N, 3) float64, angstrom, x y z as in the file
    masses: np.ndarray  # (N,) float64, Da, hydrogen mass included
    heavy_mass: float  # Da, heavy atoms only
    name: str
    title: str


@dataclass(frozen=True)
class Template:
    """A molecule as the simulator uses it (see the module docstring)."""

    pdb_id: str
    positions: np.ndarray  # (N, 3) float32, angstrom, x y z about the enclosing-sphere centre
    masses: np.ndarray  # (N,) float32, Da
    spreads: np.ndarray  # (N,) float32, angstrom RMS per axis of the atoms a bead stands for
    mass: float  # Da, united-atom (hydrogens included)
    heavy_mass: float  # Da
    n_atoms: int
    radius: float  # angstrom, largest atom distance from the centre
    bead_spacing: float
    title: str = ""
    source: str = ""

    @property
    def n_beads(self) -> int:
        return int(self.masses.shape[0])

    def coarsened(self, spacing: float) -> Template:
        """The same molecule with beads merged into cells of ``spacing`` A (mass and moments kept)."""
        if spacing <= self.bead_spacing:
            return self
        positions, masses, spreads = merge_beads(self.positions, self.masses, self.spreads, spacing)
        return Template(
            pdb_id=self.pdb_id,
            positions=positions,
            masses=masses,
            spreads=spreads,
            mass=self.mass,
            heavy_mass=self.heavy_mass,
            n_atoms=self.n_atoms,
            radius=self.radius,
            bead_spacing=spacing,
            title=self.title,
            source=self.source,
        )


def pdb_id_from_path(path: Path) -> str:
    """The file name without structure suffixes (``3jb9.cif.gz`` -> ``3jb9``)."""
    name = path.name
    for suffix in sorted(STRUCTURE_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _read_gemmi(path: Path):
    import gemmi

    if not path.is_file():
        raise VoxudaInputError(f"{path}: structure file not found; pass a PDB/mmCIF file or a built-in id")
    if path.suffix.lower() == ".gz":
        try:
            with gzip.open(path, "rb") as handle:
                handle.read(1)
        except (OSError, EOFError) as exc:
            raise VoxudaInputError(f"{path}: not a readable gzip file ({exc}); check the file") from exc
    try:
        return gemmi.read_structure(str(path))
    except (RuntimeError, ValueError, OSError) as exc:
        raise VoxudaInputError(f"{path}: not a readable PDB/mmCIF file ({exc}); check the file format") from exc


def read_atoms(path: Path | str) -> AtomModel:
    """Heavy atoms of model 1 (hydrogens, waters, ligands, alternative conformations removed)."""
    import gemmi

    path = Path(path)
    structure = _read_gemmi(path)
    if len(structure) == 0:
        raise VoxudaInputError(f"{path}: no model in the file; pass a PDB/mmCIF file with atoms")
    structure.setup_entities()
    structure.remove_hydrogens()
    structure.remove_ligands_and_waters()
    structure.remove_alternative_conformations()
    positions: list[list[float]] = []
    masses: list[float] = []
    for chain in structure[0]:
        for residue in chain:
            atoms = [atom for atom in residue if atom.element.weight > 0]
            if not atoms:
                continue
            info = gemmi.find_tabulated_residue(residue.name)
            hydrogens = 0
            if info is not None and (info.is_amino_acid() or info.is_nucleic_acid()):
                hydrogens = max(info.hydrogen_count - _HYDROGENS_LOST_ON_POLYMERISATION, 0)
            extra = hydrogens * HYDROGEN_MASS / len(atoms)
            for atom in atoms:
                positions.append(atom.pos.tolist())
                masses.append(atom.element.weight + extra)
    if not masses:
        raise VoxudaInputError(
            f"{path}: no atoms left after removing hydrogens, waters and ligands; pass a model of a macromolecule"
        )
    mass_array = np.asarray(masses, dtype=np.float64)
    heavy = float(sum(atom.element.weight for chain in structure[0] for residue in chain for atom in residue))
    title = structure.info["_struct.title"] if "_struct.title" in structure.info else ""
    return AtomModel(
        positions=np.asarray(positions, dtype=np.float64),
        masses=mass_array,
        heavy_mass=heavy,
        name=pdb_id_from_path(path),
        title=title,
    )


def enclosing_sphere_centre(points: np.ndarray, iterations: int = _ENCLOSING_SPHERE_ITERATIONS) -> np.ndarray:
    """Approximate centre of the smallest sphere holding ``points`` (Badoiu-Clarkson iteration).

    Centring a molecule here rather than at its centre of mass lets elongated molecules fit in a
    smaller box under every rotation (3jb9: 156 A instead of 162 A, so it fits 32 x 10 A).
    Only points far from the centroid can be the farthest one, so the iteration runs on those.
    """
    centroid = points.mean(axis=0)
    distance = np.linalg.norm(points - centroid, axis=1)
    candidates = points[distance >= 0.5 * distance.max()]
    centre = centroid.copy()
    for step in range(1, iterations + 1):
        farthest = candidates[np.argmax(np.einsum("ij,ij->i", candidates - centre, candidates - centre))]
        centre += (farthest - centre) / (step + 1)
    return centre


def merge_beads(
    positions: np.ndarray, masses: np.ndarray, spreads: np.ndarray, spacing: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merge points (or beads) into cells of ``spacing`` A keeping mass, centre of mass and second moment."""
    positions = np.asarray(positions, dtype=np.float64)
    masses = np.asarray(masses, dtype=np.float64)
    cells = np.floor(positions / spacing).astype(np.int64)
    _, cell_of = np.unique(cells, axis=0, return_inverse=True)
    cell_of = cell_of.reshape(-1)
    count = int(cell_of.max()) + 1
    total = np.bincount(cell_of, weights=masses, minlength=count)
    centre = np.stack(
        [np.bincount(cell_of, weights=masses * positions[:, k], minlength=count) for k in range(3)], 1
    ).astype(np.float64)
    centre /= total[:, None]
    offset = positions - centre[cell_of]
    # per-axis variance: the spread of the points about the bead centre plus their own spread
    within = np.einsum("ij,ij->i", offset, offset) / 3.0 + np.asarray(spreads, dtype=np.float64) ** 2
    variance = np.bincount(cell_of, weights=masses * within, minlength=count) / total
    return centre.astype(np.float32), total.astype(np.float32), np.sqrt(variance).astype(np.float32)


def template_from_atoms(
    atoms: AtomModel, pdb_id: str | None = None, bead_spacing: float = TEMPLATE_BEAD_SPACING, source: str = ""
) -> Template:
    """Centre the atoms on their enclosing sphere and coarse-grain them into beads."""
    centre = enclosing_sphere_centre(atoms.positions)
    centred = atoms.positions - centre
    radius = float(np.sqrt(np.einsum("ij,ij->i", centred, centred).max()))
    positions, masses, spreads = merge_beads(centred, atoms.masses, np.zeros(len(centred)), bead_spacing)
    return Template(
        pdb_id=(pdb_id or atoms.name).lower(),
        positions=positions,
        masses=masses,
        spreads=spreads,
        mass=float(atoms.masses.sum()),
        heavy_mass=atoms.heavy_mass,
        n_atoms=int(len(atoms.masses)),
        radius=radius,
        bead_spacing=float(bead_spacing),
        title=atoms.title,
        source=source,
    )


def template_from_structure(
    path: Path | str, pdb_id: str | None = None, bead_spacing: float = TEMPLATE_BEAD_SPACING
) -> Template:
    """Read a PDB/mmCIF file (gzip ok) and make its template."""
    path = Path(path)
    return template_from_atoms(read_atoms(path), pdb_id, bead_spacing, source=path.name)


def save_template(path: Path | str, template: Template) -> None:
    """Write a template as a compressed .npz (what ships in voxuda_cli/simulate/templates/)."""
    from voxuda_cli.io.atomic import atomic_output

    with atomic_output(path) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(
            handle,
            pdb_id=np.asarray(template.pdb_id),
            positions=template.positions.astype(np.float32),
            masses=template.masses.astype(np.float32),
            spreads=template.spreads.astype(np.float32),
            mass=np.float64(template.mass),
            heavy_mass=np.float64(template.heavy_mass),
            n_atoms=np.int64(template.n_atoms),
            radius=np.float64(template.radius),
            bead_spacing=np.float64(template.bead_spacing),
            title=np.asarray(template.title),
            source=np.asarray(template.source),
        )


def load_template_file(path: Path | str) -> Template:
    """Read a template .npz written by ``save_template``."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            return Template(
                pdb_id=str(data["pdb_id"]),
                positions=np.asarray(data["positions"], dtype=np.float32),
                masses=np.asarray(data["masses"], dtype=np.float32),
                spreads=np.asarray(data["spreads"], dtype=np.float32),
                mass=float(data["mass"]),
                heavy_mass=float(data["heavy_mass"]),
                n_atoms=int(data["n_atoms"]),
                radius=float(data["radius"]),
                bead_spacing=float(data["bead_spacing"]),
                title=str(data["title"]),
                source=str(data["source"]),
            )
    except (OSError, KeyError, ValueError) as exc:
        raise VoxudaInputError(f"{path}: not a voxuda template file ({exc}); rebuild it") from exc


def builtin_ids() -> list[str]:
    """PDB ids of the templates shipped in the package."""
    folder = resources.files(_TEMPLATE_PACKAGE).joinpath(_TEMPLATE_FOLDER)
    return sorted(entry.name[: -len(".npz")] for entry in folder.iterdir() if entry.name.endswith(".npz"))


def load_builtin(pdb_id: str) -> Template:
    """A shipped template by PDB id (case-insensitive)."""
    key = pdb_id.lower()
    known = builtin_ids()
    if key not in known:
        raise VoxudaInputError(f"{pdb_id}: neither a file nor a built-in structure; built-in ids: {', '.join(known)}")
    resource = resources.files(_TEMPLATE_PACKAGE).joinpath(_TEMPLATE_FOLDER, f"{key}.npz")
    with resources.as_file(resource) as path:
        template = load_template_file(path)
    return dataclasses.replace(template, source=f"built-in ({template.source})")


def _looks_like_id(spec: str) -> bool:
    return re.fullmatch(r"[0-9A-Za-z]{4}", spec) is not None


def load_template(spec: str | Path) -> Template:
    """A template from a built-in PDB id, a PDB/mmCIF file (gzip ok) or a template .npz."""
    text = str(spec)
    path = Path(text)
    if path.exists():
        if path.suffix.lower() == ".npz":
            return load_template_file(path)
        return template_from_structure(path)
    if _looks_like_id(text):
        return load_builtin(text)
    raise VoxudaInputError(f"{text}: structure file not found; pass a PDB/mmCIF file or one of {builtin_ids()}")
