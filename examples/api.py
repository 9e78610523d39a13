"""voxuda from Python: the library behind the command line, no typer involved.

Simulates a small labelled source set and a "real" target set (other molecules, other optics),
estimates the target noise, trains Vox-UDA briefly, predicts the target and scores it.
Runs in a few minutes on a laptop CPU:

    python examples/api.py [WORK_DIR]
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np

from voxuda_cli.filters import denoise
from voxuda_cli.filters.noise import NoiseSettings, estimate_noise
from voxuda_cli.inference import Predictor, PredictSettings
from voxuda_cli.io import read_dataset, write_dataset
from voxuda_cli.metrics import score_masks
from voxuda_cli.simulate import preset, simulate_in_memory
from voxuda_cli.training import TrainSettings, train


def main(work: Path) -> None:
    work.mkdir(parents=True, exist_ok=True)

    # 1. Data: a labelled source set and a target set whose masks we keep aside for scoring.
    source = simulate_in_memory(dataclasses.replace(preset("source"), n_per_structure=10, seed=0))
    target = simulate_in_memory(dataclasses.replace(preset("target"), n_per_structure=10, seed=1))
    write_dataset(work / "source.h5", source)
    write_dataset(work / "target.h5", target)
    print(f"source {len(source)} x {source.box} at {source.voxel_size} A; target {len(target)}")

    # 2. The noise generation module: sigma_t of the target's high-frequency residual.
    noise = estimate_noise(target.images, target.names, NoiseSettings(n_sampled=10, seed=0))
    noise.save(work / "noise.json")
    print(f"target sigma_t = {noise.sigma:.3f}")

    # 3. The improved bilateral filter on z-scored volumes (what the teacher sees).
    import torch

    denoised = denoise(torch.from_numpy(target.images[:2]), method="ibf", sigma_d=120.0, sigma_r=1.2)
    print(f"IBF: std {target.images[:2].std():.2f} -> {float(denoised.std()):.2f}")

    # 4. Train (tiny settings; the paper's are the TrainSettings defaults).
    settings = TrainSettings(
        src=(work / "source.h5",),
        tgt=(work / "target.h5",),
        noise=work / "noise.json",
        method="vox-uda",
        epochs=2,
        width=8,
        batch_size=8,
        device="cpu",
    )
    summary = train(settings, work / "run", overwrite=True)
    print(f"trained {summary['epochs_run']} epochs in {summary['seconds']:.0f} s -> {summary['model']}")

    # 5. Predict (with the student weights: PredictSettings.use) and score against the masks we kept aside.
    predictor = Predictor(work / "run", PredictSettings(device="cpu"))
    prediction = predictor.predict_dataset(read_dataset([work / "target.h5"]))
    report = score_masks(target.names, prediction.masks, target.masks, target.classes)
    print(f"target mIoU {report['mean']['iou']:.3f}, Dice {report['mean']['dice']:.3f}")
    print("per class:", {k: round(v["dice"], 3) for k, v in report["per_class"].items()})
    assert np.all((prediction.probabilities >= 0) & (prediction.probabilities <= 1))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("api_example"))
