"""Compress a Volume: train, round to the stored precision, measure, write the .srn file."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

import numpy as np

from .config import FVSRNConfig, TrainConfig
from .decode import decode
from .errors import SettingsError
from .fileformat import SourceInfo, write_srn
from .metrics import psnr
from .models.fvsrn import grid_shape_for
from .quantize import apply_storage_precision
from .train import AbortCallback, ProgressCallback, train
from .volume import Geometry, Volume

# HDF5 structure (superblock, groups, attributes, object headers, chunk index) of a version-1 file:
# about 9 kB measured on real files, plus a margin; used only to size models for a target ratio.
# tests/test_fileformat.py checks real files against it.
FILE_OVERHEAD_BYTES = 12_000
TRAIN_SHARE = 0.9  # of the progress bar; the rest is the final reconstruction


@dataclass
class CompressResult:
    model_config: FVSRNConfig
    reconstruction: np.ndarray  # [z, y, x], the source's dtype, exactly what a reader decodes
    stats: dict[str, float]
    file_bytes: int | None


def estimated_file_bytes(config: FVSRNConfig, geometry: Geometry) -> int:
    """Upper bound of the stored size (grid uint8 before gzip, weights fp16, HDF5 structure)."""
    grid = config.grid_channels * int(np.prod(grid_shape_for(config, geometry)))
    in_features = 3 + 6 * config.fourier_features + config.grid_channels
    w = config.mlp_width
    weights = in_features * w + w + (config.mlp_layers - 1) * (w * w + w) + w + 1
    return grid + 8 * config.grid_channels + 2 * weights + FILE_OVERHEAD_BYTES


def config_for_ratio(ratio: float, geometry: Geometry, base: FVSRNConfig | None = None) -> FVSRNConfig:
    """The largest grid resolution whose file stays within float32 bytes / ratio."""
    base = base or FVSRNConfig()
    if not ratio > 1.0:
        raise SettingsError(f"target ratio must be > 1, got {ratio}")
    budget = 4.0 * geometry.num_points / ratio
    best = None
    for resolution in range(2, 1025):
        candidate = dataclasses.replace(base, grid_resolution=resolution, grid_shape=None)
        if estimated_file_bytes(candidate, geometry) > budget:
            break
        best = candidate
    if best is None:
        raise SettingsError(
            f"ratio {ratio:g} leaves {budget:.0f} bytes, too few for even the smallest model "
            f"({estimated_file_bytes(dataclasses.replace(base, grid_resolution=2), geometry)} bytes)"
        )
    return best


def compress(
    volume: Volume,
    model_config: FVSRNConfig,
    train_config: TrainConfig,
    path: str | os.PathLike | None = None,
    progress: ProgressCallback | None = None,
    should_abort: AbortCallback | None = None,
) -> CompressResult:
    """Train on the volume and (when path is given) write the .srn file; stats describe the stored model."""

    def train_progress(fraction: float, message: str) -> None:
        if progress is not None:
            progress(TRAIN_SHARE * fraction, message)

    def decode_progress(fraction: float) -> None:
        if progress is not None:
            progress(TRAIN_SHARE + (1 - TRAIN_SHARE) * fraction, "reconstructing")

    result = train(volume, model_config, train_config, train_progress, should_abort)
    stored, layout = apply_storage_precision(result.model)
    reconstruction = decode(
        result.model, volume.geometry, volume.geometry, result.value_range, volume.dtype,
        train_config.device, progress=decode_progress,
    )
    stats = {
        "psnr": psnr(volume.values, reconstruction, result.value_range[1] - result.value_range[0]),
        "train_seconds": result.seconds,
        "steps": result.steps,
        "final_loss": result.final_loss,
    }
    file_bytes = None
    if path is not None:
        source = SourceInfo(volume.name, volume.dtype, volume.geometry, result.value_range)
        file_bytes = write_srn(path, model_config, stored, layout, source, stats)
    return CompressResult(model_config, reconstruction, stats, file_bytes)
