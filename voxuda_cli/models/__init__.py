"""Networks: VoxResNet with its feature taps, the domain discriminator, the model file."""

from voxuda_cli.models.serialization import ModelInfo, load_model, save_model
from voxuda_cli.models.voxresnet import VoxResNet, VoxResNetConfig, VoxResNetOutput

__all__ = ["ModelInfo", "VoxResNet", "VoxResNetConfig", "VoxResNetOutput", "load_model", "save_model"]
