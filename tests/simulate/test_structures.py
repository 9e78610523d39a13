from pathlib import Path

import numpy as np
import pytest

from tests.simulate.atomic_models import ALA_UNITED_MASS, build_structure
from voxuda_cli.errors import VoxudaInputError
from voxuda_cli.simulate.structures import (
    builtin_ids,
    enclosing_sphere_centre,
    load_builtin,
    load_template,
    load_template_file,
    merge_beads,
    read_atoms,
    save_template,
    template_from_structure,
)

TEMPLATE_FOLDER = Path(__file__).resolve().parents[2] / "voxuda_cli" / "simulate" / "templates"


@pytest.mark.parametrize("fmt", ["pdb", "cif", "pdb.gz"])
def test_reader_drops_hydrogens_waters_ligands_and_adds_united_atom_mass(write_ball, fmt: str) -> None:
    path = write_ball(radius=12.0, fmt=fmt)
    atoms = read_atoms(path)
    residues = len(atoms.masses) // 5
    assert len(atoms.masses) == residues * 5  # H, HOH and ATP gone
    assert atoms.masses.sum() == pytest.approx(residues * ALA_UNITED_MASS, rel=1e-4)
    assert atoms.heavy_mass == pytest.approx(residues * (ALA_UNITED_MASS - 5 * 1.008), rel=1e-4)
    assert np.abs(atoms.positions).max() < 100  # the far-away ligand and water were removed


def test_template_is_centred_on_its_enclosing_sphere(write_ball) -> None:  # type: ignore[no-untyped-def]
    template = template_from_structure(write_ball(radius=15.0, centre=(40.0, -20.0, 7.0)))
    assert template.pdb_id == "ball"
    assert np.abs(np.average(template.positions, axis=0, weights=template.masses)).max() < 1.5
    assert 14.0 < template.radius < 16.5
    assert template.masses.sum() == pytest.approx(template.mass, rel=1e-5)


def test_enclosing_sphere_of_a_lopsided_cloud() -> None:
    rng = np.random.default_rng(0)
    # a dense blob plus a few far points: the centre of mass is off, the sphere centre is not
    points = np.concatenate([rng.normal(0, 1, (5000, 3)), [[20, 0, 0], [-20, 0, 0], [0, 20, 0], [0, -20, 0]]])
    centre = enclosing_sphere_centre(points)
    radius = np.linalg.norm(points - centre, axis=1).max()
    assert radius <= 20.5
    assert radius < np.linalg.norm(points - points.mean(0), axis=1).max() + 1e-9


def test_merging_beads_keeps_mass_centre_and_second_moment() -> None:
    rng = np.random.default_rng(1)
    points = rng.normal(0, 10, (3000, 3))
    masses = rng.uniform(12, 16, 3000)
    positions, bead_masses, spreads = merge_beads(points, masses, np.zeros(3000), spacing=6.0)
    assert len(bead_masses) < 1500
    assert bead_masses.sum() == pytest.approx(masses.sum(), rel=1e-5)
    centre = np.average(points, axis=0, weights=masses)
    np.testing.assert_allclose(np.average(positions, axis=0, weights=bead_masses), centre, atol=1e-3)
    # per-axis second moment about the centre: point cloud == beads (spread included)
    moment = np.average(((points - centre) ** 2).sum(1), weights=masses) / 3
    bead_moment = np.average(
        ((positions - centre) ** 2).sum(1) / 3 + spreads.astype(np.float64) ** 2, weights=bead_masses
    )
    assert bead_moment == pytest.approx(moment, rel=1e-3)


def test_template_file_round_trip(tmp_path: Path, write_ball) -> None:  # type: ignore[no-untyped-def]
    template = template_from_structure(write_ball(radius=10.0))
    save_template(tmp_path / "ball.npz", template)
    again = load_template(tmp_path / "ball.npz")
    np.testing.assert_array_equal(again.positions, template.positions)
    assert again.mass == template.mass and again.pdb_id == "ball"
    assert load_template_file(tmp_path / "ball.npz").n_beads == template.n_beads


def test_builtin_templates_ship_small_with_real_masses() -> None:
    assert builtin_ids() == ["3jb9", "3p3w", "4jsv", "4v1w", "6qt9", "7cth", "7pbl"]
    total = sum(p.stat().st_size for p in TEMPLATE_FOLDER.glob("*.npz"))
    assert total < 3_000_000
    # heavy-atom masses of the real models (../shared/structures README, hydrogens and ligands excluded)
    heavy_kda = {"3jb9": 1150, "4v1w": 432, "7pbl": 209, "6qt9": 560, "4jsv": 293, "7cth": 220, "3p3w": 152}
    for pdb_id, expected in heavy_kda.items():
        template = load_builtin(pdb_id)
        assert template.heavy_mass / 1e3 == pytest.approx(expected, rel=0.01)
        assert 1.05 < template.mass / template.heavy_mass < 1.09  # hydrogens: ~7 % of a protein's mass
    assert load_builtin("3JB9").radius < 160  # fits 32 x 10 A under any rotation


def test_bad_structures_raise(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pdb.gz"
    junk.write_bytes(b"not gzip at all")
    with pytest.raises(VoxudaInputError, match="gzip"):
        read_atoms(junk)
    text = tmp_path / "text.cif"
    text.write_text("data_x\n_cell.length_a oops\nloop_\n_atom_site.id\n")
    with pytest.raises(VoxudaInputError):
        read_atoms(text)
    only_hetero = tmp_path / "hetero.pdb"
    only_hetero.write_text(build_structure(np.zeros((0, 3))).make_pdb_string())
    with pytest.raises(VoxudaInputError, match="no atoms left"):
        read_atoms(only_hetero)
    with pytest.raises(VoxudaInputError, match="built-in"):
        load_template("9zzz")
    with pytest.raises(VoxudaInputError, match="not found"):
        load_template(tmp_path / "missing.pdb")
