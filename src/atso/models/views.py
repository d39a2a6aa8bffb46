"""A volume model: the 2D networks of its views (RSTN), saved and restored as one model file."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from atso.models.registry import build_model

SHARED = "shared"


class ViewNetworks(nn.Module):
    """One 2D network per view (or one shared by all views); a strategy treats the set as one model.

    Args:
        networks: network per key, a view name or ``shared``.
        views: the views the model segments, in fusion order.
    """

    def __init__(self, networks: dict[str, nn.Module], views: Sequence[str]) -> None:
        super().__init__()
        self.networks = nn.ModuleDict(networks)
        self.views = list(views)
        missing = [view for view in self.views if view not in self.networks and SHARED not in self.networks]
        if missing:
            raise ValueError(f"no network for views {missing}")

    def network(self, view: str) -> nn.Module:
        """The network that segments slices of ``view``."""
        return self.networks[view] if view in self.networks else self.networks[SHARED]

    def keys(self) -> list[str]:
        """The networks' keys, in training order."""
        return list(self.networks.keys())

    def views_of(self, key: str) -> list[str]:
        """The views whose slices train network ``key``."""
        return list(self.views) if key == SHARED else [key]

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # pragma: no cover - a set of networks has no single input
        raise TypeError("a ViewNetworks holds one network per view; call network(view)(slices)")


def build_view_networks(
    name: str, num_classes: int, in_channels: int, views: Sequence[str], shared: bool, **options: object
) -> ViewNetworks:
    """Build the networks of a volume model from the registry (each its own weights unless ``shared``)."""
    keys = [SHARED] if shared else list(views)
    return ViewNetworks({key: build_model(name, num_classes, in_channels, **options) for key in keys}, views)
