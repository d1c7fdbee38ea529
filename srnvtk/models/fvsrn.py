"""fV-SRN: a trainable latent feature grid read trilinearly, followed by a small MLP."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import FVSRNConfig
from ..volume import Geometry
from .layers import FourierFeatures, mlp


def grid_shape_for(config: FVSRNConfig, geometry: Geometry) -> tuple[int, int, int]:
    """Latent grid (z, y, x) sizes: the longest physical axis gets grid_resolution, others in proportion."""
    if config.grid_shape is not None:
        return config.grid_shape
    lengths = physical_lengths(geometry)
    longest = max(lengths)
    shape_xyz = [max(2, round(config.grid_resolution * length / longest)) for length in lengths]
    return (shape_xyz[2], shape_xyz[1], shape_xyz[0])


def physical_lengths(geometry: Geometry) -> list[float]:
    return [abs(hi - lo) for lo, hi in geometry.bounds()]


def aspect_of(geometry: Geometry) -> torch.Tensor:
    """Per-axis (x, y, z) length relative to the longest, so features see the true proportions."""
    lengths = torch.tensor(physical_lengths(geometry), dtype=torch.float32)
    return lengths / lengths.max()


class FVSRN(nn.Module):
    """Maps positions in [-1, 1]^3 (x, y, z order) to a normalised value."""

    architecture = "fvsrn"

    def __init__(self, config: FVSRNConfig, grid_shape: tuple[int, int, int], aspect: torch.Tensor) -> None:
        super().__init__()
        self.config = config
        generator = torch.Generator().manual_seed(0)
        self.grid = nn.Parameter(
            (torch.rand((config.grid_channels, *grid_shape), generator=generator) * 2 - 1) * 0.01
        )
        self.fourier = FourierFeatures(config.fourier_features, aspect)
        in_features = 3 + self.fourier.out_features + config.grid_channels
        self.mlp = mlp(in_features, config.mlp_width, config.mlp_layers)

    def grid_features(self, positions: torch.Tensor) -> torch.Tensor:
        """Trilinear lookup of every channel at each position: (N, 3) -> (N, C)."""
        sample_at = positions.view(1, -1, 1, 1, 3)
        feats = F.grid_sample(
            self.grid.unsqueeze(0), sample_at, mode="bilinear", padding_mode="border", align_corners=True
        )
        return feats.view(self.grid.shape[0], -1).t()

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        inputs = torch.cat([positions, self.fourier(positions), self.grid_features(positions)], dim=1)
        return self.mlp(inputs).squeeze(1)
