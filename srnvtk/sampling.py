"""Positions the networks see: world coordinates mapped to [-1, 1] over the source grid's bounds."""

from __future__ import annotations

import numpy as np
import torch

from .volume import Geometry


def normalized_axis(source: Geometry, axis: int, world: np.ndarray) -> np.ndarray:
    """Map world coordinates along one axis (0=x) to [-1, 1] over the source grid's bounds."""
    lo, hi = source.bounds()[axis]
    return (2.0 * (np.asarray(world, dtype=np.float64) - lo) / (hi - lo) - 1.0).astype(np.float32)


def voxel_positions(flat_index: torch.Tensor, shape_zyx: tuple[int, int, int]) -> torch.Tensor:
    """Normalised (x, y, z) positions of lattice points given by flat [z, y, x] indices."""
    nz, ny, nx = shape_zyx
    x = flat_index % nx
    y = (flat_index // nx) % ny
    z = flat_index // (nx * ny)
    scale = torch.tensor(
        [2.0 / (nx - 1), 2.0 / (ny - 1), 2.0 / (nz - 1)], device=flat_index.device, dtype=torch.float32
    )
    return torch.stack([x, y, z], dim=1).to(torch.float32) * scale - 1.0
