"""How parameters are stored: the latent grid as uint8 codes with a per-channel scale and offset, every
other parameter as fp16, packed into one vector to keep the file's structure small.

The codes have FVSRNConfig.grid_bits bits (8 by default): with fewer, the values are rounded to fewer levels
over the same range and the file's entropy coder makes the codes smaller; `fake_quantize` is that rounding in
torch, for quantisation-aware training.

The latent tensor is a model's `latent_name` parameter: an fV-SRN's grid, or a wavelet fV-SRN's coefficients.
Its codes have a scale and offset per channel and per quantization group (`model.quantization_groups()`): one
group, the whole grid, for a plain grid; for wavelet coefficients the approximation and each level's details,
whose magnitudes can differ by orders. A pruned latent tensor stores only its surviving entries (channel-major,
one code each) beside a packed bit mask of which entries survive; the others are exactly zero. Neurcomp's pruned
neurons are simply absent: its matrices are stored shrunk, and the model's structure (its layer widths) says how.

`storage_tensors` gives what is written; `stored_state` the float tensors a reader rebuilds from it, so
the encoder can evaluate exactly the model a reader will see.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from .errors import FileFormatError

if TYPE_CHECKING:
    from .models.protocol import SRNModel

GRID = "grid"  # uint8: (C, z, y, x) codes, or (K,) codes of the K kept entries when pruned
GRID_QUANT = "grid_quant"  # (2, C): scale, offset; (2, C, G) with G quantization groups (wavelet levels)
GRID_KEEP = "grid_keep"  # uint8: np.packbits of the keep mask, shape structure["keep_shape"] (pruned grids)
WEIGHTS = "weights"
WEIGHTS_LAYOUT = "weights_layout"  # JSON [[name, shape], ...], stored as an attribute of WEIGHTS
# uint8: the k-means indices of every clustered matrix (srnvtk.kmeans), packed like the weights
WEIGHT_INDICES = "weight_indices"
INDICES_LAYOUT = "indices_layout"  # JSON [[name, shape], ...], stored as an attribute of WEIGHT_INDICES

Region = tuple[slice, slice, slice]  # (z, y, x) slices of the latent tensor
Group = Sequence[Region]  # regions sharing one scale and offset per channel
WHOLE: list[Group] = [[(slice(None), slice(None), slice(None))]]


@dataclass
class StoredModel:
    """A model as a file holds it: arrays, the packed weights' layout and the model's structure."""

    arrays: dict[str, np.ndarray]
    layout: list[list]  # [name, shape] of every packed weight, in order
    structure: dict = field(default_factory=dict)  # model.structure(): shapes beyond the settings
    index_layout: list[list] = field(default_factory=list)  # [name, shape] of every packed index tensor


def code_levels(bits: int) -> int:
    """The largest code of `bits`-bit latent codes (255 at 8 bits)."""
    if not 1 <= bits <= 8:
        raise ValueError(f"latent codes have 1 to 8 bits, not {bits}")
    return (1 << bits) - 1


def _quantize_block(flat: np.ndarray, kept: np.ndarray | None,
                    levels: int = 255) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(C, N) floats -> (C, N) uint8 codes in [0, levels] and per-channel scale and offset over the kept
    entries."""
    if kept is None:
        offset, top = flat.min(axis=1), flat.max(axis=1)
    else:
        big = np.finfo(np.float32).max
        offset = np.where(kept, flat, big).min(axis=1)
        top = np.where(kept, flat, -big).max(axis=1)
        empty = ~kept.any(axis=1)
        offset[empty], top[empty] = 0.0, 0.0
    span = top - offset
    scale = np.where(span > 0, span / np.float32(levels), 1.0).astype(np.float32)
    codes = np.clip(np.rint((flat - offset[:, None]) / scale[:, None]), 0, levels).astype(np.uint8)
    return codes, scale, offset.astype(np.float32)


def quantize_grid(
    grid: np.ndarray, keep: np.ndarray | None = None, groups: Sequence[Group] | None = None, bits: int = 8
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(C, z, y, x) float grid -> uint8 codes of `bits` bits, scale and offset (value = code * scale + offset).

    Without groups: one scale and offset per channel, shape (C,). With groups (of regions tiling the grid
    together): one per channel and group, shape (C, G). With a keep mask (broadcastable to the grid) only the
    kept entries count, and only their codes are returned, as one channel-major vector.
    """
    channels = grid.shape[0]
    grid = grid.astype(np.float32)
    kept = None if keep is None else np.broadcast_to(keep, grid.shape)
    codes = np.zeros(grid.shape, dtype=np.uint8)
    scale = np.ones((channels, len(groups or WHOLE)), dtype=np.float32)
    offset = np.zeros_like(scale)
    for g, group in enumerate(groups or WHOLE):
        indices = [(slice(None), *region) for region in group]
        values = np.concatenate([grid[i].reshape(channels, -1) for i in indices], axis=1)
        group_kept = None if kept is None else np.concatenate([kept[i].reshape(channels, -1) for i in indices], axis=1)
        group_codes, scale[:, g], offset[:, g] = _quantize_block(values, group_kept, code_levels(bits))
        start = 0
        for i in indices:
            size = grid[i][0].size
            codes[i] = group_codes[:, start:start + size].reshape(grid[i].shape)
            start += size
    if groups is None:
        scale, offset = scale[:, 0], offset[:, 0]
    return (codes if kept is None else codes[kept]), scale, offset


def fake_quantize(latent: torch.Tensor, bits: int, keep: torch.Tensor | None = None,
                  groups: Sequence[Group] | None = None) -> torch.Tensor:
    """The latent tensor as its stored codes will give it back (quantize_grid, then dequantize), with the gradient
    passed straight through the rounding: what quantisation-aware training reads. keep: the kept entries
    (broadcastable to the latent tensor; the others are zero and do not set the range)."""
    channels = latent.shape[0]
    levels = code_levels(bits)
    kept = None if keep is None else keep.to(torch.bool).expand(latent.shape)
    rounded = torch.zeros_like(latent)
    values = latent.detach()
    for group in groups or WHOLE:
        index = [(slice(None), *region) for region in group]
        block = torch.cat([values[i].reshape(channels, -1) for i in index], dim=1)
        if kept is None:
            low, high = block.amin(dim=1), block.amax(dim=1)
        else:
            mask = torch.cat([kept[i].reshape(channels, -1) for i in index], dim=1)
            low = torch.where(mask, block, torch.inf).amin(dim=1)
            high = torch.where(mask, block, -torch.inf).amax(dim=1)
            empty = ~mask.any(dim=1)
            low, high = low.masked_fill(empty, 0.0), high.masked_fill(empty, 0.0)
        span = high - low
        scale = torch.where(span > 0, span / levels, torch.ones_like(span))
        shape = (channels,) + (1,) * (latent.dim() - 1)
        low, scale = low.reshape(shape), scale.reshape(shape)
        for i in index:
            rounded[i] = torch.clamp(torch.round((values[i] - low) / scale), 0, levels) * scale + low
    if kept is not None:
        rounded = rounded * kept
    return latent + (rounded - values)


def _value_maps(
    shape: tuple[int, ...], scale: np.ndarray, offset: np.ndarray, groups: Sequence[Group] | None
) -> tuple[np.ndarray, np.ndarray]:
    """Scale and offset of every grid entry (broadcastable to shape)."""
    if groups is None:
        column = (-1,) + (1,) * (len(shape) - 1)
        return scale.reshape(column), offset.reshape(column)
    scales, offsets = np.empty(shape, dtype=np.float32), np.empty(shape, dtype=np.float32)
    for g, group in enumerate(groups):
        for region in group:
            index = (slice(None), *region)
            scales[index] = scale[:, g, None, None, None]
            offsets[index] = offset[:, g, None, None, None]
    return scales, offsets


def dequantize_grid(
    codes: np.ndarray, scale: np.ndarray, offset: np.ndarray, groups: Sequence[Group] | None = None
) -> np.ndarray:
    """The grid of (C, z, y, x) codes; scale and offset as quantize_grid returns them for these groups."""
    scales, offsets = _value_maps(codes.shape, scale, offset, groups)
    return codes.astype(np.float32) * scales + offsets


def dequantize_kept(
    codes: np.ndarray, scale: np.ndarray, offset: np.ndarray, kept: np.ndarray, groups: Sequence[Group] | None = None
) -> np.ndarray:
    """The full grid (kept's shape) from the kept entries' codes; the rest zero."""
    scales, offsets = (np.broadcast_to(m, kept.shape) for m in _value_maps(kept.shape, scale, offset, groups))
    grid = np.zeros(kept.shape, dtype=np.float32)
    grid[kept] = codes.astype(np.float32) * scales[kept] + offsets[kept]
    return grid


def _latent(model: SRNModel) -> tuple[str | None, list[Group] | None]:
    """The name of the model's latent tensor (None without one, as in Neurcomp) and its quantization groups."""
    name = model.latent_name
    return name, (model.quantization_groups() if name is not None else None)


def storage_tensors(model: SRNModel, keep: torch.Tensor | None = None) -> StoredModel:
    """The arrays to write, the layout of the packed weights and the model's structure.

    keep: store only these latent entries (as if the model's keep mask were this one), to measure what a
    file would cost without changing the model; None: the model's own keep mask.
    """
    if model.masks():
        raise ValueError("the model still has pruning masks; bake them in (model.bake_masks()) before storing")
    state = {name: t.detach().cpu().numpy() for name, t in model.state_dict().items()}
    arrays: dict[str, np.ndarray] = {}
    latent_name, groups = _latent(model)
    structure = model.structure()
    if latent_name in state:
        keep = model.grid_keep if keep is None else keep
        keep = None if keep is None else keep.detach().cpu().numpy()
        if keep is not None:
            structure["keep_shape"] = list(keep.shape)
        codes, scale, offset = quantize_grid(state.pop(latent_name), keep, groups, model.config.grid_bits)
        arrays[GRID] = codes
        arrays[GRID_QUANT] = np.stack([scale, offset])
        if keep is not None:
            arrays[GRID_KEEP] = np.packbits(keep.reshape(-1))
    indices = {name: state.pop(name) for name in [n for n, a in state.items() if a.dtype == np.uint8]}
    index_layout = [[name, list(array.shape)] for name, array in indices.items()]
    if indices:
        arrays[WEIGHT_INDICES] = np.concatenate([a.reshape(-1) for a in indices.values()])
    layout = [[name, list(array.shape)] for name, array in state.items()]
    arrays[WEIGHTS] = np.concatenate([a.reshape(-1) for a in state.values()]).astype(np.float16)
    return StoredModel(arrays, layout, structure, index_layout)


def stored_state(stored: StoredModel, model: SRNModel) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    """The float32 state dict a reader rebuilds for this (freshly built) model, and the keep mask of its latent
    tensor (None when not pruned).

    FileFormatError when the arrays disagree with each other, with the layout or with the model's latent tensor.
    """
    arrays = stored.arrays
    if WEIGHTS not in arrays:
        raise FileFormatError("missing or unreadable tensor data (no packed weights)")
    state: dict[str, torch.Tensor] = {}
    keep = None
    latent_name, groups = _latent(model)
    if GRID in arrays or GRID_QUANT in arrays:
        if latent_name is None:
            raise FileFormatError(f"a latent grid is stored for a {model.architecture} model, which has none")
        grid, keep = _stored_grid(arrays, stored.structure, groups)
        state[latent_name] = torch.from_numpy(grid)
    packed = arrays[WEIGHTS]
    if packed.ndim != 1:
        raise FileFormatError("grid codes, grid scale/offset or packed weights have the wrong type or shape")
    state.update(_unpacked(packed, stored.layout, np.float32, "packed weights"))
    if stored.index_layout or WEIGHT_INDICES in arrays:
        indices = arrays.get(WEIGHT_INDICES)
        if indices is None or indices.dtype != np.uint8 or indices.ndim != 1:
            raise FileFormatError("the weight indices are missing or have the wrong type or shape")
        state.update(_unpacked(indices, stored.index_layout, np.uint8, "weight indices"))
    return state, None if keep is None else torch.from_numpy(keep)


def _unpacked(packed: np.ndarray, layout: list[list], dtype, what: str) -> dict[str, torch.Tensor]:
    """The tensors a packed vector holds, by its [name, shape] layout."""
    tensors = {}
    start = 0
    for name, shape in layout:
        size = int(np.prod(shape))
        if start + size > packed.size:
            raise FileFormatError(f"{what} are shorter than their layout")
        tensors[name] = torch.from_numpy(packed[start:start + size].astype(dtype).reshape(shape))
        start += size
    if start != packed.size:
        raise FileFormatError(f"{what} are longer than their layout")
    return tensors


def _stored_grid(
    arrays: dict[str, np.ndarray], structure: dict, groups: list[Group] | None
) -> tuple[np.ndarray, np.ndarray | None]:
    try:
        codes, quant = arrays[GRID], arrays[GRID_QUANT]
    except KeyError as exc:
        raise FileFormatError(f"missing or unreadable tensor data ({exc})") from None
    per_group = () if groups is None else (len(groups),)
    if codes.dtype != np.uint8 or quant.ndim != 2 + len(per_group) or quant.shape[0] != 2:
        raise FileFormatError("grid codes, grid scale/offset or packed weights have the wrong type or shape")
    channels = quant.shape[1]
    if quant.shape[2:] != per_group:
        raise FileFormatError(f"grid scale/offset for {quant.shape[2]} quantization groups, the model has "
                              f"{per_group[0]}")
    if GRID_KEEP not in arrays:
        if quant.shape[1] != codes.shape[0] or codes.ndim != 4:
            raise FileFormatError("grid codes, grid scale/offset or packed weights have the wrong type or shape")
        return dequantize_grid(codes, quant[0], quant[1], groups), None
    try:
        keep_shape = tuple(int(s) for s in structure["keep_shape"])
        grid_shape = (channels, *(int(s) for s in structure["grid_shape"]))
    except (KeyError, TypeError, ValueError):
        raise FileFormatError("a pruned grid without its keep mask's shape") from None
    packed = arrays[GRID_KEEP]
    count = int(np.prod(keep_shape))
    if (len(keep_shape) != 4 or keep_shape[1:] != grid_shape[1:] or keep_shape[0] not in (1, channels)
            or packed.dtype != np.uint8 or packed.shape != ((count + 7) // 8,)):
        raise FileFormatError(f"the grid's keep mask does not fit the grid {grid_shape}")
    keep = np.unpackbits(packed, count=count).astype(bool).reshape(keep_shape)
    kept = np.broadcast_to(keep, grid_shape)
    if codes.ndim != 1 or codes.size != int(kept.sum()):
        raise FileFormatError(f"{codes.size} stored grid values for {int(kept.sum())} kept entries")
    return dequantize_kept(codes, quant[0], quant[1], kept, groups), keep


def apply_storage_precision(model: SRNModel) -> StoredModel:
    """Round the model's parameters to what will be stored; return what will be stored."""
    stored = storage_tensors(model)
    state, _keep = stored_state(stored, model)
    device = next(model.parameters()).device
    model.load_state_dict({k: v.to(device) for k, v in state.items()})
    return stored
