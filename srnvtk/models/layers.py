"""Building blocks shared by the architectures."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..native.snake import snake
from ..volume import Geometry


def physical_lengths(geometry: Geometry) -> list[float]:
    return [abs(hi - lo) for lo, hi in geometry.bounds()]


def aspect_of(geometry: Geometry) -> torch.Tensor:
    """Per-axis (x, y, z) length relative to the longest, so features see the true proportions."""
    lengths = torch.tensor(physical_lengths(geometry), dtype=torch.float32)
    return lengths / lengths.max()


class Snake(nn.Module):
    """Snake activation x + sin(x)^2: monotone trend plus a periodic part (fV-SRN's SnakeAlt family). On the CPU
    a C kernel computes it where one can be built (srnvtk.native.snake: one pass each way instead of torch's
    eight or so, which made up most of a training step)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fused = snake(x)
        return fused if fused is not None else x + torch.sin(x).square()


class FourierFeatures(nn.Module):
    """Axis-aligned sin/cos of the position at octaves pi * 2^k, k < octaves (positions in [-1, 1])."""

    def __init__(self, octaves: int, aspect: torch.Tensor) -> None:
        super().__init__()
        self.octaves = octaves
        freqs = math.pi * (2.0 ** torch.arange(octaves, dtype=torch.float32))
        self.register_buffer("frequencies", freqs, persistent=False)
        self.register_buffer("aspect", aspect.to(torch.float32), persistent=False)

    @property
    def out_features(self) -> int:
        return 6 * self.octaves

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        if self.octaves == 0:
            return positions.new_zeros(positions.shape[0], 0)
        angles = (positions * self.aspect).unsqueeze(-1) * self.frequencies  # (N, 3, K)
        angles = angles.flatten(1)
        return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


def mlp(in_features: int, width: int, hidden_layers: int, outputs: int = 1) -> nn.Sequential:
    """hidden_layers Linear+Snake layers of the given width, then a linear head to `outputs` values."""
    layers: list[nn.Module] = []
    for i in range(hidden_layers):
        layers += [nn.Linear(in_features if i == 0 else width, width), Snake()]
    layers.append(nn.Linear(width, outputs))
    return nn.Sequential(*layers)
