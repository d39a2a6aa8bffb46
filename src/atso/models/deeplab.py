"""DeepLabV3+ (Chen et al., ECCV 2018) on a MONAI ResNet backbone, with optional local ImageNet weights."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from monai.networks.nets import resnet18, resnet34, resnet50, resnet101
from torch import nn

from atso.errors import AtsoError
from atso.storage import load_torch

BACKBONES = {"resnet18": resnet18, "resnet34": resnet34, "resnet50": resnet50, "resnet101": resnet101}
# Atrous rates of the ASPP branches for each output stride, as in the DeepLabV3 paper.
ASPP_RATES = {16: (6, 12, 18), 8: (12, 24, 36)}
ASPP_CHANNELS = 256
LOW_LEVEL_CHANNELS = 48


def build_backbone(name: str, in_channels: int) -> nn.Module:
    """A 2D MONAI ResNet whose parameter names equal torchvision's (``conv1.weight``, ``layer1.0.bn1.bias``...).

    Args:
        name: one of ``BACKBONES``.
        in_channels: channels of the input image.

    Returns:
        The ResNet; call ``backbone_features`` on it, not its own ``forward`` (that one pools).
    """
    # bias_downsample=False: torchvision's shortcut convolutions have no bias, so the state dicts line up.
    return BACKBONES[name](
        spatial_dims=2,
        n_input_channels=in_channels,
        conv1_t_size=7,
        conv1_t_stride=2,
        feed_forward=False,
        bias_downsample=False,
    )


def torchvision_to_backbone_key(key: str) -> str | None:
    """The backbone state-dict key for a torchvision ResNet key, or None for keys the backbone lacks (``fc.*``)."""
    key = key.removeprefix("module.")  # saved from a DataParallel wrapper
    if key.startswith("fc."):
        return None
    return key  # the names already agree (see build_backbone)


def dilate_layer(layer: nn.Sequential, dilation: int, previous_dilation: int) -> None:
    """Trade a ResNet stage's stride 2 for dilated 3x3 convolutions, in place.

    The output then holds the strided stage's output at every other position plus the positions in
    between. The strided convolution still reads the input grid, so it keeps the input's spacing
    (``previous_dilation``, as torchvision's ``replace_stride_with_dilation`` does); every 3x3
    convolution after it reads the twice finer grid, so it takes ``dilation``.

    Args:
        layer: a ``layerN`` stage of a MONAI ResNet whose first block downsamples.
        dilation: dilation of the 3x3 convolutions after the strided one.
        previous_dilation: dilation of the stage before, and of the strided convolution.
    """
    for module in layer.modules():
        if not isinstance(module, nn.Conv2d):
            continue
        module_dilation = previous_dilation if module.stride != (1, 1) else dilation
        module.stride = (1, 1)
        if module.kernel_size == (3, 3):
            module.dilation = (module_dilation, module_dilation)
            module.padding = (module_dilation, module_dilation)


def backbone_features(backbone: nn.Module, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The ResNet's layer1 output (low level, stride 4) and layer4 output (high level)."""
    features = backbone.maxpool(backbone.act(backbone.bn1(backbone.conv1(image))))
    low_level = backbone.layer1(features)
    high_level = backbone.layer4(backbone.layer3(backbone.layer2(low_level)))
    return low_level, high_level


def load_backbone_weights(backbone: nn.Module, path: str | Path, backbone_name: str) -> None:
    """Load a local torchvision-style ResNet state dict into the backbone; every key must match.

    Raises:
        AtsoError: the file is missing or unreadable, or any key fails to match a backbone tensor.
    """
    path = Path(path)
    if not path.is_file():
        raise AtsoError(f"pretrained_backbone file '{path}' does not exist; give the path of a local ResNet state dict")
    state_dict = load_torch(path, setting="model.options.pretrained_backbone")  # refuses pickled code, names the file
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise AtsoError(f"pretrained_backbone file '{path}' does not hold a state dict of tensors")

    expected = backbone.state_dict()
    mapped = {}
    unmatched = []
    considered = 0
    for key, tensor in state_dict.items():
        backbone_key = torchvision_to_backbone_key(key)
        if backbone_key is None:
            continue
        considered += 1
        if backbone_key in expected and expected[backbone_key].shape == tensor.shape:
            mapped[backbone_key] = tensor
        else:
            unmatched.append(key)
    # Old torchvision checkpoints predate the num_batches_tracked counters; those may be absent.
    missing = [key for key in expected if key not in mapped and not key.endswith("num_batches_tracked")]
    if unmatched or missing:
        raise AtsoError(
            f"pretrained_backbone file '{path}' does not fit the {backbone_name} backbone for "
            f"{expected['conv1.weight'].shape[1]} input channels: {len(mapped)} of its {considered} keys match"
            f" (unmatched: {', '.join(unmatched[:3]) or 'none'}), {len(missing)} backbone tensors are absent"
            f" ({', '.join(missing[:3]) or 'none'}); give a torchvision-style {backbone_name} state dict"
        )
    backbone.load_state_dict(mapped, strict=False)


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int = 1, dilation: int = 1) -> nn.Sequential:
    """Convolution ("same" padding), batch norm, ReLU."""
    return nn.Sequential(
        nn.Conv2d(
            in_channels, out_channels, kernel_size, padding=dilation * (kernel_size // 2), dilation=dilation, bias=False
        ),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: a 1x1 branch, three atrous 3x3 branches and image pooling."""

    def __init__(self, in_channels: int, rates: tuple[int, int, int]) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            [conv_bn_relu(in_channels, ASPP_CHANNELS)]
            + [conv_bn_relu(in_channels, ASPP_CHANNELS, kernel_size=3, dilation=rate) for rate in rates]
        )
        # No batch norm after pooling: it sees one value per channel and image at 1x1, which fails
        # in training at batch size 1 and is noisy for small batches.
        self.image_pooling = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(in_channels, ASPP_CHANNELS, kernel_size=1), nn.ReLU(inplace=True)
        )
        self.project = nn.Sequential(conv_bn_relu(5 * ASPP_CHANNELS, ASPP_CHANNELS), nn.Dropout(0.5))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Concatenate the five branches and project them back to ``ASPP_CHANNELS``."""
        pooled = self.image_pooling(features).expand(-1, -1, *features.shape[-2:])
        return self.project(torch.cat([branch(features) for branch in self.branches] + [pooled], dim=1))


class DeepLabV3Plus(nn.Module):
    """DeepLabV3+: ResNet encoder with ASPP, a decoder fusing stride-4 features, logits at input size.

    Args:
        in_channels: channels of the input image.
        num_classes: channels of the output logits.
        backbone: ``resnet18``, ``resnet34``, ``resnet50`` or ``resnet101``.
        pretrained_backbone: path of a local torchvision-style ResNet state dict, or None for random weights.
        output_stride: 16 (layer4 dilated) or 8 (layer3 and layer4 dilated).

    Raises:
        AtsoError: an unknown backbone or output stride, or unusable pretrained weights.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        backbone: str = "resnet50",
        pretrained_backbone: str | Path | None = None,
        output_stride: int = 16,
    ) -> None:
        super().__init__()
        if backbone not in BACKBONES:
            raise AtsoError(
                f"model 'deeplabv3plus' option backbone='{backbone}' is unknown; choose one of: {', '.join(BACKBONES)}"
            )
        if output_stride not in ASPP_RATES:
            raise AtsoError(f"model 'deeplabv3plus' option output_stride={output_stride!r} is invalid; choose 8 or 16")
        self.backbone = build_backbone(backbone, in_channels)
        if pretrained_backbone is not None:
            load_backbone_weights(self.backbone, pretrained_backbone, backbone)
        if output_stride == 8:
            dilate_layer(self.backbone.layer3, dilation=2, previous_dilation=1)
            dilate_layer(self.backbone.layer4, dilation=4, previous_dilation=2)
        else:
            dilate_layer(self.backbone.layer4, dilation=2, previous_dilation=1)

        expansion = 4 if backbone in ("resnet50", "resnet101") else 1  # bottleneck blocks widen 4x
        self.aspp = ASPP(512 * expansion, ASPP_RATES[output_stride])
        self.low_level_project = conv_bn_relu(64 * expansion, LOW_LEVEL_CHANNELS)
        self.decoder = nn.Sequential(
            conv_bn_relu(ASPP_CHANNELS + LOW_LEVEL_CHANNELS, ASPP_CHANNELS, kernel_size=3),
            conv_bn_relu(ASPP_CHANNELS, ASPP_CHANNELS, kernel_size=3),
        )
        self.classifier = nn.Conv2d(ASPP_CHANNELS, num_classes, kernel_size=1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Map ``N x in_channels x H x W`` to logits ``N x num_classes x H x W``."""
        low_level, high_level = backbone_features(self.backbone, image)
        context = self.aspp(high_level)
        context = F.interpolate(context, size=low_level.shape[-2:], mode="bilinear", align_corners=False)
        fused = self.decoder(torch.cat([context, self.low_level_project(low_level)], dim=1))
        return F.interpolate(self.classifier(fused), size=image.shape[-2:], mode="bilinear", align_corners=False)
