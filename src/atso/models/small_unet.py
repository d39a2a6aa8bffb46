"""A compact 2D U-Net that trains at a useful speed on a laptop CPU, for demos and tests."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """Two 3x3 convolutions, each followed by batch norm and ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class SmallUNet(nn.Module):
    """U-Net: max-pool down, bilinear upsample + skip concat up, 1x1 head.

    Any height and width of at least ``2**depth`` works; ``build_model`` pads them to a multiple of
    ``2**depth`` so that every upsampled map lines up pixel for pixel with its skip connection.

    Args:
        in_channels: channels of the input image.
        num_classes: channels of the output logits.
        base_channels: channels at full resolution; each level down doubles them.
        depth: number of 2x downsamplings.
    """

    def __init__(self, in_channels: int, num_classes: int, base_channels: int = 16, depth: int = 4) -> None:
        super().__init__()
        # The bottleneck keeps the width of the level above it instead of doubling again: that one
        # doubling would triple the parameter count for little gain at demo scale.
        widths = [base_channels * 2 ** min(level, depth - 1) for level in range(depth + 1)]
        self.encoder = nn.ModuleList()
        previous = in_channels
        for width in widths:
            self.encoder.append(conv_block(previous, width))
            previous = width
        self.decoder = nn.ModuleList(
            conv_block(widths[level + 1] + widths[level], widths[level]) for level in reversed(range(depth))
        )
        self.head = nn.Conv2d(widths[0], num_classes, kernel_size=1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Map ``N x in_channels x H x W`` to logits ``N x num_classes x H x W``."""
        skips = []
        features = image
        for level, block in enumerate(self.encoder):
            if level > 0:
                features = F.max_pool2d(features, kernel_size=2)
            features = block(features)
            skips.append(features)
        skips.pop()  # the bottleneck output is not a skip connection
        for block in self.decoder:
            skip = skips.pop()
            features = F.interpolate(features, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            features = block(torch.cat([features, skip], dim=1))
        return self.head(features)
