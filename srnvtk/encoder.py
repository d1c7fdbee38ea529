"""Compress a Volume: train (and prune), round to the stored precision, measure, write the .srn file.

Also sizes models for a target ratio: the largest fV-SRN grid or Neurcomp width whose file fits.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from functools import partial

import numpy as np

from .budget import FEWEST_FIT_BITS, budget_fit
from .config import FVSRNConfig, ModelConfig, NeurcompConfig, PruningConfig, TrainConfig
from .decode import decode
from .errors import FileFormatError, InputError, SettingsError
from .filechecks import check_array_name
from .fileformat import SourceInfo, SRNFile, write_srn
from .metrics import psnr
from .models.fvsrn import grid_shape_for
from .models.neurcomp import full_widths, hidden_layers, parameter_shapes
from .pruning import pruned_fraction, pruned_fractions
from .quantize import apply_storage_precision
from .train import AbortCallback, ProgressCallback, train
from .volume import Geometry, Volume, validate_for_training
from .wavelet import level_groups, resolve_levels, subbands

# A file's container and header beyond its tensors (srnvtk.fileformat): under 1 kB on real files, plus a margin
# for long settings; used only to size models for a target ratio. tests/test_fileformat.py checks real files.
FILE_OVERHEAD_BYTES = 2_048
# A pruned grid's extra section (the packed keep mask): its table entry and header description.
KEEP_MASK_OVERHEAD_BYTES = 64
INDICES_OVERHEAD_BYTES = 64  # the same for clustered Neurcomp weights' indices
TRAIN_SHARE = 0.9  # of the progress bar; the rest is the final reconstruction


@dataclass
class CompressResult:
    model_config: ModelConfig
    reconstruction: np.ndarray  # [z, y, x], the source's dtype, exactly what a reader decodes
    stats: dict[str, float]
    file_bytes: int | None
    pruned_fractions: dict[str, float] = dataclasses.field(default_factory=dict)  # per stored parameter
    bound: dict | None = None  # an error-bounded file's split and candidates (srnvtk.bounded)


def estimated_file_bytes(config: ModelConfig, geometry: Geometry, pruning: PruningConfig | None = None) -> int:
    """Upper bound of the stored size of an unpruned model (pruning only adds room for the grid's keep mask)."""
    if isinstance(config, NeurcompConfig):
        shapes = parameter_shapes(config, full_widths(config))
        weights = sum(int(np.prod(shape)) for shape in shapes.values())
        if not config.weight_clusters:
            return 2 * weights + FILE_OVERHEAD_BYTES
        # Clustered: a uint8 index per hidden weight and fp16 shared values.
        hidden = [int(np.prod(shapes[f"layers.{k}.linear.weight"])) for k in hidden_layers(config)]
        indices = sum(hidden) + INDICES_OVERHEAD_BYTES
        return 2 * (weights - sum(hidden)) + 2 * config.weight_clusters * len(hidden) + indices + FILE_OVERHEAD_BYTES
    return _fvsrn_file_bytes(config, geometry, pruning if pruning is not None and pruning.enabled else None)


def _quantization_groups(config: FVSRNConfig, shape: tuple[int, int, int]) -> int:
    """How many scale/offset pairs each channel stores: 1, or one per level group of a wavelet grid.

    SettingsError when the wavelet levels asked for are too many for the grid.
    """
    if config.wavelet is None:
        return 1
    return len(level_groups(subbands(shape, resolve_levels(shape, config.wavelet, config.wavelet_levels))))


def _fvsrn_file_bytes(config: FVSRNConfig, geometry: Geometry, pruning: PruningConfig | None) -> int:
    """Grid (or wavelet coefficient) uint8 codes before coding (a section is never stored larger than raw) and
    their float32 scales and offsets, weights fp16, the container; a pruned grid adds its packed keep mask."""
    shape = grid_shape_for(config, geometry)
    grid = latent_code_bytes(config, geometry)
    quantization = 8 * config.grid_channels * _quantization_groups(config, shape)
    in_features = 3 + 6 * config.fourier_features + config.grid_channels
    w = config.mlp_width
    weights = in_features * w + w + (config.mlp_layers - 1) * (w * w + w) + config.outputs * (w + 1)
    mask = 0
    if pruning is not None:  # one bit per grid position, or per grid entry
        units = int(np.prod(grid_shape_for(config, geometry)))
        units *= config.grid_channels if pruning.granularity == "position_channel" else 1
        mask = (units + 7) // 8 + KEEP_MASK_OVERHEAD_BYTES
    return grid + quantization + 2 * weights + mask + FILE_OVERHEAD_BYTES


def source_info(volume: Volume) -> SourceInfo:
    """What a file records about the source array (InputError for values that cannot be trained on, or a name
    no reader would accept)."""
    try:
        name = check_array_name(volume.name)
    except FileFormatError as exc:
        raise InputError(f"{exc}; rename the array to compress it") from None
    return SourceInfo(name, volume.dtype, volume.geometry, validate_for_training(volume))


def budget_for_ratio(ratio: float, geometry: Geometry) -> int:
    """The most bytes a file may have to compress this geometry's float32 values by the ratio."""
    if not ratio > 1.0:
        raise SettingsError(f"target ratio must be > 1, got {ratio}")
    return int(4 * geometry.num_points // ratio)


def latent_code_bytes(config: FVSRNConfig, geometry: Geometry) -> int:
    """Bytes of the uncompressed uint8 codes of an unpruned fV-SRN's latent tensor."""
    return config.grid_channels * int(np.prod(grid_shape_for(config, geometry)))


def config_for_ratio(
    ratio: float, geometry: Geometry, base: ModelConfig | None = None, pruning: PruningConfig | None = None,
    latent_headroom: float = 1.0,
) -> ModelConfig:
    """The largest model of base's architecture whose file stays within float32 bytes / ratio: fV-SRN's
    grid resolution, or Neurcomp's width. Pruning shrinks the file further, by what it prunes.

    latent_headroom > 1 lets an fV-SRN's latent codes take that many times their share of the budget: the
    model is then meant to be fitted to the budget after training (srnvtk.budget), as rate control does.
    """
    base = base or FVSRNConfig()
    budget = budget_for_ratio(ratio, geometry)
    if isinstance(base, NeurcompConfig):
        candidates = (dataclasses.replace(base, width=w) for w in range(1, 4097))
    else:
        candidates = (dataclasses.replace(base, grid_resolution=r, grid_shape=None) for r in range(2, 1025))
    best = None
    smallest = 0
    for candidate in candidates:
        try:
            size = estimated_file_bytes(candidate, geometry, pruning)
            if isinstance(candidate, FVSRNConfig):
                size -= int(latent_code_bytes(candidate, geometry) * (1.0 - 1.0 / latent_headroom))
        except SettingsError:  # explicit wavelet levels too many for so small a grid: try a larger one
            continue
        smallest = smallest or size
        if size > budget:
            break
        best = candidate
    if best is None:
        raise SettingsError(
            f"ratio {ratio:g} leaves {budget:.0f} bytes, too few for even the smallest model ({smallest} bytes)"
        )
    return best


def compress(
    volume: Volume,
    *,
    model_config: ModelConfig | None = None,
    train_config: TrainConfig | None = None,
    pruning: PruningConfig | None = None,
    path: str | os.PathLike | None = None,
    progress: ProgressCallback | None = None,
    should_abort: AbortCallback | None = None,
    target_bytes: int | None = None,
) -> CompressResult:
    """Train on the volume and (when path is given) write the .srn file; stats describe the stored model.

    target_bytes: fit the file into this many bytes (srnvtk.budget) after training, then fine-tune what is
    kept; checked once more after fine-tuning, which changes the codes and so what gzip makes of them.
    """

    def train_progress(fraction: float, message: str) -> None:
        if progress is not None:
            progress(TRAIN_SHARE * fraction, message)

    def decode_progress(fraction: float) -> None:
        if progress is not None:
            progress(TRAIN_SHARE + (1 - TRAIN_SHARE) * fraction, "reconstructing")

    model_config = model_config or FVSRNConfig()
    train_config = train_config or TrainConfig()
    source = source_info(volume)
    fit_for = partial(budget_fit, target_bytes, source, pruning, fewest_bits=FEWEST_FIT_BITS)
    result = train(volume, model_config, train_config, progress=train_progress, should_abort=should_abort,
                   pruning=pruning, fit=None if target_bytes is None else fit_for())
    if target_bytes is not None:
        # Fine-tuning changed the codes and so what gzip makes of them: trim once more, never grow (new
        # entries would go untrained).
        fit_for(grow=False)(result.model)
        model_config = result.model.config  # the fit may have grown the grid
    stored = apply_storage_precision(result.model)
    in_memory = SRNFile(result.model, result.model.config, source, pruning=pruning or PruningConfig())
    reconstruction = decode(in_memory, device=train_config.device, progress=decode_progress)
    stats = {
        "psnr": psnr(volume.values, reconstruction, result.value_range[1] - result.value_range[0]),
        "train_seconds": result.seconds,
        "steps": result.steps,
        "final_loss": result.final_loss,
        "pruned_fraction": pruned_fraction(result.model),
    }
    file_bytes = None
    if path is not None:
        file_bytes = write_srn(path, model_config, stored, source, stats, pruning)
    return CompressResult(model_config, reconstruction, stats, file_bytes, pruned_fractions(result.model))
