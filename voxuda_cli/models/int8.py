"""Int8 inference of an eval VoxResNet on oneDNN: 8-bit activations and weights, int32 accumulation.

Where a CPU has 8-bit dot-product instructions (AVX512-VNNI, AVX-VNNI, AMX-INT8), oneDNN's int8
3D convolution runs several times float32's speed (benchmarks/bench_predict.py prints both). The
network computes the same function as the float32 inference forward (models/onednn.py) with every
convolution input rounded to 8 bits, so probabilities move by about 1e-2 and masks by a fraction of
a percent of their voxels (benchmarks/results.md, issue 24): an opt-in precision, never a silent one.

How the network maps onto 8-bit tensors (docs/METHOD.md, "8-bit inference"):

- Every convolution but the first reads a ReLU output (the pre-activation BN-ReLU views, and the
  hidden map of each residual module), so its input is unsigned 8-bit with zero point 0; where a
  convolution's output feeds only a ReLU, its batch norm is folded into it and the output is
  requantised to 8 bits, the clipping at zero point 0 being the ReLU. The first convolution reads
  the z-scored input (zero point 128).
- The stem's output f_c feeds two BN-ReLU views (classifier 0 and stage 1's strided convolution)
  and nothing else, so its convolution is computed once per view with each norm folded in.
- The residual stream of the stages stays float32 (it is summed); its BN-ReLU views are quantised
  by one affine pass at 1/8 of the voxels or fewer.
- Weights: per output channel, symmetric, after folding. Activations: per tensor, the scale from
  the largest value of each tensor over calibration windows (:meth:`Int8VoxResNet.calibrated`), so the numbers
  depend on the model and the calibration data only, never on the window plan.

Uses ``torch.ops.onednn.qconv_pointwise`` on plain uint8/int8 tensors: the operators torch's own
int8 CPU compilation (inductor) lowers to, not the deprecated quantized tensor types.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple, cast

import torch
from torch import nn

from voxuda_cli.models import onednn
from voxuda_cli.models.speed import cpu_flags
from voxuda_cli.models.voxresnet import (
    AuxiliaryClassifier,
    ResidualModule,
    Stage,
    VoxResNet,
    shuffle_kernel,
    voxel_shuffle,
)

INPUT_ZERO_POINT = 128  # the z-scored input is signed: unsigned 8 bits around 128
_ONES = [1, 1, 1]


def supported() -> bool:
    """Whether this torch build has oneDNN's int8 convolution (any x86-64 CPU runs it)."""
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.onednn, "qconv_pointwise")


def fast_here() -> bool:
    """Whether this CPU has 8-bit dot-product instructions, where int8 pays (elsewhere it may not)."""
    return bool(cpu_flags() & {"avx512_vnni", "avx_vnni", "amx_int8"})


def inference_bytes_per_voxel(width: int) -> int:
    """Peak working memory of one 8-bit forward per input voxel, for a VoxResNet of ``width`` C.

    At full resolution the float32 and 8-bit inputs, two 8-bit maps of C channels and the float32
    logits; later each transposed head's phases and their shuffled copy: 2 C + 40 bytes (measured
    with VmHWM on 96^3 and 128^3 channels-last windows, 2-core CPU: 40 B at width 8, 94-98 B at 32).
    """
    return 2 * width + 40


class Activation(NamedTuple):
    """A map as the next convolution reads it: uint8 ``data`` meaning ``(data - zero_point) * scale``."""

    data: torch.Tensor
    scale: float = 1.0
    zero_point: int = 0


class Layer(NamedTuple):
    """A convolution with its batch norm folded in (float weight and bias), padding 1."""

    weight: torch.Tensor
    bias: torch.Tensor | None
    stride: int = 1


class Int8Ops:
    """The int8 forward's operations: oneDNN convolutions on uint8 maps and int8 weights.

    Built without scales it calibrates: each map's scale is set from its own largest value as the
    forward reaches it (computed from the 8-bit maps before it, so the scales follow the network as
    it runs), then :meth:`freeze` keeps them for every later forward.
    """

    def __init__(self) -> None:
        self.scales: dict[str, float] = {}
        self.calibrating = True
        self._packed: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    def freeze(self) -> Int8Ops:
        self.calibrating = False
        return self

    def _step(self, name: str, values: torch.Tensor, levels: int) -> float:
        """The scale of map ``name``: while calibrating, its largest magnitude in ``values`` over ``levels``."""
        if self.calibrating:
            self.scales[name] = max(float(values.abs().amax()), 1e-8) / levels
        return self.scales[name]

    def quantise_input(self, x: torch.Tensor) -> Activation:
        scale = self._step("input", x, 127)
        data = torch.round(x / scale).add_(INPUT_ZERO_POINT).clamp_(0, 255).to(torch.uint8)
        return Activation(data, scale, INPUT_ZERO_POINT)

    def quantise_view(self, name: str, x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> Activation:
        """relu(x * scale + shift) in 8 bits: one affine pass, clipping (the ReLU, at zero point 0), and
        the conversion, which truncates: the affine pass adds the half step that makes it round."""
        if self.calibrating:
            self._step(name, torch.relu_(torch.addcmul(_channels(shift), x, _channels(scale))), 255)
        step = self.scales[name]
        view = torch.addcmul(_channels(shift / step + 0.5), x, _channels(scale / step)).clamp_(0, 255)
        return Activation(view.to(torch.uint8), step)

    def conv(self, name: str, layer: Layer, x: Activation, requantise: bool) -> torch.Tensor | Activation:
        """The convolution of 8-bit ``x``: float32 out, or (``requantise``) 8 bits, negatives clipped."""
        if requantise and self.calibrating:
            y = torch.relu_(cast(torch.Tensor, self.conv(name, layer, x, False)))
            step = self._step(name, y, 255)
            return Activation(y.div_(step).add_(0.5).clamp_(0, 255).to(torch.uint8), step)
        weight, scales, zero_points = self._pack(name, layer, x)
        output_scale = self.scales[name] if requantise else 1.0
        y = torch.ops.onednn.qconv_pointwise(
            x.data, x.scale, x.zero_point, weight, scales, zero_points, layer.bias, [layer.stride] * 3, _ONES,
            _ONES, 1, output_scale, 0, None if requantise else torch.float32, "none", [], "",
        )  # fmt: skip
        return Activation(y, output_scale) if requantise else y

    def _pack(self, name: str, layer: Layer, x: Activation) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-output-channel symmetric int8 weights in oneDNN's layout (once per layer)."""
        if name not in self._packed:
            weight = layer.weight.float()
            scales = weight.abs().amax(dim=(1, 2, 3, 4)).clamp_min(1e-12) / 127
            quantised = torch.round(weight / scales.view(-1, 1, 1, 1, 1)).clamp_(-128, 127).to(torch.int8)
            stride = [layer.stride] * 3
            packed = torch.ops.onednn.qconv_prepack(
                quantised, scales, x.scale, x.zero_point, stride, _ONES, _ONES, 1, None
            )
            self._packed[name] = packed, scales, torch.zeros(len(scales), dtype=torch.int32)
        return self._packed[name]


def _channels(values: torch.Tensor) -> torch.Tensor:
    return values.view(1, -1, 1, 1, 1)


class Int8VoxResNet(nn.Module):
    """An eval VoxResNet's inference forward with 8-bit activations (module docstring).

    Built uncalibrated; :meth:`calibrated` gives the network with activation scales from
    representative normalised inputs (the largest value of every 8-bit map over them), whose
    ``forward`` gives one channel, the foreground's logit minus the background's (B, 1, D, H, W),
    whose sigmoid is the two-class softmax's foreground probability: each head computes only that
    margin, half its arithmetic (inference/network.py's ``foreground_probability`` takes either). The
    folded float weights are taken once, here: build it again after the weights change.
    """

    def __init__(self, network: VoxResNet, ops: Int8Ops | None = None, layers: dict[str, Layer] | None = None) -> None:
        super().__init__()
        self.network = network.eval()
        self.layers = layers if layers is not None else _folded_layers(network)
        self.ops = ops

    @torch.no_grad()
    def calibrated(self, inputs: Iterable[torch.Tensor]) -> Int8VoxResNet:
        """This network with activation scales from a forward over ``inputs`` (normalised (B, 1, D, H, W),
        run as one batch): each map's largest value over them, the maps before it already in 8 bits."""
        ops = Int8Ops()
        self._forward(ops, torch.cat([x.float() for x in inputs]).contiguous(memory_format=torch.channels_last_3d))
        return Int8VoxResNet(self.network, ops.freeze(), self.layers)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.ops is None:
            raise RuntimeError("Int8VoxResNet: use calibrated(inputs) for a network with activation scales")
        return self._forward(self.ops, x.float().contiguous(memory_format=torch.channels_last_3d))

    def _forward(self, ops: Int8Ops, x: torch.Tensor) -> torch.Tensor:
        layers, network = self.layers, self.network
        stem = cast(Activation, ops.conv("stem.0", layers["stem.0"], ops.quantise_input(x), True))
        # f_c is read through two BN-ReLU views only: its convolution once per view, each norm folded in
        view = ops.conv("classifier.0.view", layers["stem.3|activations.0"], stem, True)
        margin = cast(torch.Tensor, ops.conv("classifier.0", layers["classifiers.0"], cast(Activation, view), False))
        del view
        view = ops.conv("stages.0.view", layers["stem.3|stages.0"], stem, True)
        del stem
        h = cast(torch.Tensor, ops.conv("stages.0.down", layers["stages.0.down"], cast(Activation, view), False))
        del view
        for index, stage in enumerate(cast(Iterable[Stage], network.stages)):
            if index > 0:  # stage 1's strided convolution ran above, on the stem's view
                scale, shift = onednn.norm_affine(_norm(stage.down[0]))
                view = ops.quantise_view(f"stages.{index}.view", h, scale, shift)
                h = cast(torch.Tensor, ops.conv(f"stages.{index}.down", layers[f"stages.{index}.down"], view, False))
            for number, module in enumerate(cast(Iterable[ResidualModule], stage.residuals)):
                h = self._residual(ops, f"stages.{index}.residuals.{number}", module, h)
            margin = margin.add_(self._head(ops, index + 1, h))
        return margin

    def _residual(self, ops: Int8Ops, name: str, module: ResidualModule, h: torch.Tensor) -> torch.Tensor:
        scale, shift = onednn.norm_affine(_norm(module.body[0]))
        view = ops.quantise_view(f"{name}.view", h, scale, shift)
        hidden = cast(Activation, ops.conv(f"{name}.hidden", self.layers[f"{name}.first"], view, True))
        return h.add_(cast(torch.Tensor, ops.conv(f"{name}.second", self.layers[f"{name}.second"], hidden, False)))

    def _head(self, ops: Int8Ops, index: int, h: torch.Tensor) -> torch.Tensor:
        scale, shift = onednn.norm_affine(_activation_norm(self.network, index))
        view = ops.quantise_view(f"classifier.{index}.view", h, scale, shift)
        phases = cast(torch.Tensor, ops.conv(f"classifier.{index}", self.layers[f"classifiers.{index}"], view, False))
        return voxel_shuffle(phases, cast(AuxiliaryClassifier, self.network.classifiers[index]).scale)


def _folded_layers(network: VoxResNet) -> dict[str, Layer]:
    """Every convolution of the int8 forward, batch norms folded where one follows, in float32."""
    stem = network.stem
    stages = cast(list[Stage], list(network.stages))
    heads = [cast(AuxiliaryClassifier, classifier).head for classifier in network.classifiers]
    second = _conv(stem[3]).weight
    layers = {
        "stem.0": Layer(*onednn.fold_batch_norm(_conv(stem[0]).weight, _norm(stem[1]))),
        "stem.3|activations.0": Layer(*onednn.fold_batch_norm(second, _activation_norm(network, 0))),
        "stem.3|stages.0": Layer(*onednn.fold_batch_norm(second, _norm(stages[0].down[0]))),
        "classifiers.0": _margin(_conv(heads[0]).weight, _conv(heads[0]).bias, 1),
    }
    for index, stage in enumerate(stages):
        layers[f"stages.{index}.down"] = Layer(_conv(stage.down[2]).weight, None, 2)
        for number, module in enumerate(cast(Iterable[ResidualModule], stage.residuals)):
            name, body = f"stages.{index}.residuals.{number}", module.body
            layers[f"{name}.first"] = Layer(*onednn.fold_batch_norm(_conv(body[2]).weight, _norm(body[3])))
            layers[f"{name}.second"] = Layer(_conv(body[5]).weight, None)
        head = cast(nn.ConvTranspose3d, heads[index + 1])
        layers[f"classifiers.{index + 1}"] = _margin(*shuffle_kernel(head), int(head.stride[0]) ** 3)
    return {name: Layer(layer.weight.detach().float().contiguous(memory_format=torch.channels_last_3d),
                        None if layer.bias is None else layer.bias.detach().float(), layer.stride)
            for name, layer in layers.items()}  # fmt: skip


def _margin(weight: torch.Tensor, bias: torch.Tensor | None, phases: int) -> Layer:
    """A two-class head (output channels class-major: class, then ``phases`` shuffle phases) as one
    computing the foreground's logit minus the background's: half the output channels."""
    assert weight.shape[0] == 2 * phases and bias is not None  # VoxResNet's heads: two classes, with bias
    weight, bias = weight.view(2, phases, *weight.shape[1:]), bias.view(2, phases)
    return Layer(weight[1] - weight[0], bias[1] - bias[0])


def _conv(module: nn.Module) -> nn.Conv3d:
    return cast(nn.Conv3d, module)


def _norm(module: nn.Module) -> nn.BatchNorm3d:
    return cast(nn.BatchNorm3d, module)


def _activation_norm(network: VoxResNet, index: int) -> nn.BatchNorm3d:
    """The batch norm of classifier ``index``'s BN-ReLU view."""
    return _norm(cast(nn.Sequential, network.activations[index])[0])
