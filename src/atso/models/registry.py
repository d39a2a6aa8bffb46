"""Segmentation networks by name: every one maps ``N x C_in x H x W`` to logits ``N x classes x H x W``."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from monai.networks.nets import BasicUNet, UNet
from torch import nn

from atso.errors import AtsoError
from atso.models.deeplab import DeepLabV3Plus
from atso.models.small_unet import SmallUNet


class PadToMultiple(nn.Module):
    """Pad the input's height and width up to a multiple, run the network, crop the output back.

    Encoder-decoder networks need sizes their downsamplings divide exactly. Sizes are also raised to
    at least two multiples, so the coarsest feature map is at least 2x2: instance norm, and batch
    norm at batch size 1, cannot normalise a single value in training. Replicate padding at the
    bottom and right keeps the image content where it was, so cropping recovers the input grid.

    Args:
        network: the wrapped network.
        multiple: the total downsampling factor of the network.
    """

    def __init__(self, network: nn.Module, multiple: int) -> None:
        super().__init__()
        self.network = network
        self.multiple = multiple

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Run the wrapped network on any ``H x W`` and return logits of that size."""
        height, width = image.shape[-2:]
        padded_height = max(math.ceil(height / self.multiple), 2) * self.multiple
        padded_width = max(math.ceil(width / self.multiple), 2) * self.multiple
        if (padded_height, padded_width) != (height, width):
            image = F.pad(image, (0, padded_width - width, 0, padded_height - height), mode="replicate")
        return self.network(image)[..., :height, :width]


# Upper bounds checked before a network is built: beyond them a network does not fit in memory, or
# (small_unet depth 99: 16 * 2**99 channels) allocating it never returns.
MAX_CHANNELS = 4096
MAX_LEVELS = 8


def _positive_int(model: str, option: str, value: object, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise AtsoError(f"model '{model}' option {option}={value!r} is invalid; give a positive integer")
    if maximum is not None and value > maximum:
        raise AtsoError(f"model '{model}' option {option}={value!r} is too large; give at most {maximum}")
    return value


def _positive_ints(
    model: str, option: str, values: object, length: int | None = None, maximum: int | None = None
) -> tuple[int, ...]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or (length and len(values) != length):
        size = f"{length} " if length else ""
        raise AtsoError(
            f"model '{model}' option {option}={values!r} is invalid; give a list of {size}positive integers"
        )
    return tuple(_positive_int(model, option, value, maximum) for value in values)


def _small_unet(num_classes: int, in_channels: int, base_channels: int = 16, depth: int = 4) -> nn.Module:
    base_channels = _positive_int("small_unet", "base_channels", base_channels, MAX_CHANNELS)
    depth = _positive_int("small_unet", "depth", depth, MAX_LEVELS)
    if base_channels * 2 ** (depth - 1) > MAX_CHANNELS:
        raise AtsoError(
            f"model 'small_unet' options base_channels={base_channels}, depth={depth} give "
            f"{base_channels * 2 ** (depth - 1)} channels at the deepest level; keep base_channels * 2**(depth-1) "
            f"at most {MAX_CHANNELS}"
        )
    return PadToMultiple(SmallUNet(in_channels, num_classes, base_channels, depth), multiple=2**depth)


def _basic_unet(
    num_classes: int, in_channels: int, features: Sequence[int] = (32, 32, 64, 128, 256, 32)
) -> nn.Module:
    features = _positive_ints("basic_unet", "features", features, length=6, maximum=MAX_CHANNELS)
    network = BasicUNet(spatial_dims=2, in_channels=in_channels, out_channels=num_classes, features=features)
    return PadToMultiple(network, multiple=16)  # BasicUNet always downsamples 4 times


def _monai_unet(
    num_classes: int,
    in_channels: int,
    channels: Sequence[int] = (16, 32, 64, 128, 256),
    strides: Sequence[int] = (2, 2, 2, 2),
    num_res_units: int = 2,
) -> nn.Module:
    channels = _positive_ints("monai_unet", "channels", channels, maximum=MAX_CHANNELS)
    if not 2 <= len(channels) <= MAX_LEVELS + 1:
        raise AtsoError(
            f"model 'monai_unet' option channels={list(channels)} is invalid; give 2 to {MAX_LEVELS + 1} levels"
        )
    strides = _positive_ints("monai_unet", "strides", strides, length=len(channels) - 1, maximum=4)
    if isinstance(num_res_units, bool) or not isinstance(num_res_units, int) or num_res_units < 0:
        raise AtsoError(f"model 'monai_unet' option num_res_units={num_res_units!r} is invalid; give an integer >= 0")
    network = UNet(
        spatial_dims=2,
        in_channels=in_channels,
        out_channels=num_classes,
        channels=channels,
        strides=strides,
        num_res_units=num_res_units,
    )
    return PadToMultiple(network, multiple=math.prod(strides))


def _deeplabv3plus(
    num_classes: int,
    in_channels: int,
    backbone: str = "resnet50",
    pretrained_backbone: str | Path | None = None,
    output_stride: int = 16,
) -> nn.Module:
    network = DeepLabV3Plus(in_channels, num_classes, backbone, pretrained_backbone, output_stride)
    return PadToMultiple(network, multiple=output_stride)


# Each factory takes (num_classes, in_channels, **options); its keyword parameters are the options.
MODEL_FACTORIES: dict[str, Callable[..., nn.Module]] = {
    "small_unet": _small_unet,
    "basic_unet": _basic_unet,
    "monai_unet": _monai_unet,
    "deeplabv3plus": _deeplabv3plus,
}


def available_models() -> list[str]:
    """Names ``build_model`` accepts, sorted."""
    return sorted(MODEL_FACTORIES)


def build_model(name: str, num_classes: int, in_channels: int = 3, **options: object) -> nn.Module:
    """Build a segmentation network by name.

    Args:
        name: one of ``available_models()``.
        num_classes: channels of the output logits.
        in_channels: channels of the input image.
        **options: the model's own settings, e.g. ``base_channels`` for ``small_unet``.

    Returns:
        A module mapping float ``N x in_channels x H x W`` to logits ``N x num_classes x H x W``, any H, W >= 16.

    Raises:
        AtsoError: an unknown model, an unknown option, or an invalid value.
    """
    if name not in MODEL_FACTORIES:
        raise AtsoError(f"model '{name}' is unknown; choose one of: {', '.join(available_models())}")
    for argument, value in (("num_classes", num_classes), ("in_channels", in_channels)):
        _positive_int(name, argument, value)
    factory = MODEL_FACTORIES[name]
    known = [option for option in inspect.signature(factory).parameters if option not in ("num_classes", "in_channels")]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise AtsoError(
            f"model '{name}' has no option {', '.join(unknown)}; its options are: {', '.join(known) or 'none'}"
        )
    try:
        return factory(num_classes, in_channels, **options)
    except (TypeError, ValueError) as error:  # a value of the right name but a type or range MONAI rejects
        raise AtsoError(f"model '{name}' rejects options {options}: {error}") from error


def count_parameters(model: nn.Module) -> int:
    """Number of scalar parameters in the model, trainable or frozen."""
    return sum(parameter.numel() for parameter in model.parameters())
