"""Tiny model files for inference tests: a seeded random VoxResNet, or one trained briefly on spheres."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from voxuda_cli.models import ModelInfo, VoxResNet, VoxResNetConfig, save_model


def random_network(width: int = 8, seed: int = 0) -> VoxResNet:
    """A seeded, randomly initialised network with non-trivial BN statistics (so outputs vary)."""
    torch.manual_seed(seed)
    network = VoxResNet(VoxResNetConfig(width=width))
    with torch.no_grad():
        for module in network.modules():
            if isinstance(module, torch.nn.BatchNorm3d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    return network.eval()


def write_model(
    path: Path,
    network: VoxResNet | None = None,
    box: int = 32,
    voxel_size: float = 10.0,
    invert: bool = False,
    eta: float = 0.85,
    denoiser: str = "ibf",
    teacher: VoxResNet | None = None,
    settings: dict | None = None,
) -> Path:
    """A model.pt from ``network`` (default: random width 8); the teacher weights default to the student's."""
    network = network or random_network()
    info = ModelInfo(
        architecture=network.config,
        box=(box, box, box),
        voxel_size=voxel_size,
        invert=invert,
        denoiser=denoiser,
        denoiser_params={"sigma_d": 120.0, "sigma_r": 1.2, "keep_rate": 0.244},
        eta=eta,
        settings=dict(settings or {}),
        weights=("teacher", "student"),
    )
    save_model(path, info, network.state_dict(), (teacher or network).state_dict())
    return path


def threshold_network(width: int = 8, gain: float = 6.0, level: float = 0.8) -> VoxResNet:
    """A VoxResNet whose weights are set by hand to segment bright blobs: p = sigmoid(gain * (mean3(x)+ - level)).

    Deterministic and meaningful without training: the first stem convolution averages a 3^3
    neighbourhood into channel 0, the rest of the stem passes it on (through ReLUs), and only the
    full-resolution classifier reads it; the three coarser classifiers output zero.
    """
    network = VoxResNet(VoxResNetConfig(width=width))
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.zero_()
        for module in network.modules():
            if isinstance(module, torch.nn.BatchNorm3d):
                module.weight.fill_(1.0)
                module.running_mean.zero_()
                module.running_var.fill_(1.0 - module.eps)  # exactly the identity in eval mode
        first, second = network.stem[0], network.stem[3]
        first.weight[0, 0] = 1.0 / 27.0
        second.weight[0, 0, 1, 1, 1] = 1.0
        head = network.classifiers[0].head
        head.weight[1, 0, 1, 1, 1] = gain
        head.bias[1] = -gain * level
    return network.eval()


def ball(shape: tuple[int, int, int], center: tuple[float, float, float], radius: float) -> np.ndarray:
    grid = np.indices(shape, dtype=np.float32)
    distance = np.sqrt(sum((g - c) ** 2 for g, c in zip(grid, center)))
    return (distance <= radius).astype(np.uint8)


def sphere_batch(
    rng: np.random.Generator, count: int, box: int = 32, noise: float = 0.6
) -> tuple[np.ndarray, np.ndarray]:
    """Noisy bright balls of random size and place, z-scored: (images, masks)."""
    masks = np.stack([ball((box,) * 3, tuple(rng.uniform(10, box - 10, 3)), rng.uniform(4, 8)) for _ in range(count)])
    images = masks + rng.normal(0, noise, masks.shape)
    images = (images - images.mean(axis=(1, 2, 3), keepdims=True)) / images.std(axis=(1, 2, 3), keepdims=True)
    return images.astype(np.float32), masks


def trained_sphere_network(width: int = 4, steps: int = 40, seed: int = 0) -> VoxResNet:
    """A network trained for a few steps on noisy spheres: enough to segment them roughly."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    network = VoxResNet(VoxResNetConfig(width=width))
    optimiser = torch.optim.Adam(network.parameters(), lr=1e-2)
    network.train()
    for _ in range(steps):
        images, masks = sphere_batch(rng, 4)
        logits = network(torch.from_numpy(images)[:, None])
        loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(masks).long())
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return network.eval()
