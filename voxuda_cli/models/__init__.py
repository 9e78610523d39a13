"""Networks: VoxResNet with its feature taps, the domain discriminator, the model file."""

from voxuda_cli.models.discriminator import DomainDiscriminator, GradientReversal, dann_ramp, reverse_gradient
from voxuda_cli.models.serialization import ModelInfo, load_model, save_model
from voxuda_cli.models.voxresnet import VoxResNet, VoxResNetConfig, VoxResNetOutput

__all__ = [
    "DomainDiscriminator",
    "GradientReversal",
    "ModelInfo",
    "VoxResNet",
    "VoxResNetConfig",
    "VoxResNetOutput",
    "dann_ramp",
    "load_model",
    "reverse_gradient",
    "save_model",
]
