"""Simulated, labelled subtomograms from atomic models (``voxuda simulate-prep``), and import mode.

Library entry points (no CLI needed)::

    from voxuda_cli.simulate import SimulationSettings, preset, simulate_dataset, simulate_in_memory
    settings = preset("source")    # the paper's; or "target", "crowded", "randomized", or SimulationSettings(...)
    summary = simulate_dataset("source.h5", settings)  # streamed to disk, like the CLI
    dataset = simulate_in_memory(SimulationSettings(n_per_structure=4, snr=(0.05,)))  # small sets

Modules: structures (atomic models -> bead templates, built-in templates), density (beads -> Da per
voxel, molecular-volume mask), imaging (tilt series, CTF, noise at SNR, reconstruction), nuisances
(neighbours, membranes, backgrounds, coloured noise, B-factor, dose, detector: one function each),
scene (each sample's nuisance draws and the union mask), presets (settings and presets), simulator
(the pipeline, workers), preview (``--preview`` montages), importing (import mode).
"""

from voxuda_cli.simulate.importing import import_dataset
from voxuda_cli.simulate.presets import SimulationSettings, preset, resolve_simulation_settings
from voxuda_cli.simulate.simulator import (
    SimulatedSample,
    iter_samples,
    prepare_molecules,
    simulate_dataset,
    simulate_in_memory,
)
from voxuda_cli.simulate.structures import Template, builtin_ids, load_template, template_from_structure

__all__ = [
    "SimulatedSample",
    "SimulationSettings",
    "Template",
    "builtin_ids",
    "import_dataset",
    "iter_samples",
    "load_template",
    "prepare_molecules",
    "preset",
    "resolve_simulation_settings",
    "simulate_dataset",
    "simulate_in_memory",
    "template_from_structure",
]
