"""How parameters are stored: the latent grid as uint8 codes with a per-channel scale and offset, every
other parameter (the MLP) as fp16, packed into one vector to keep the file's structure small.

`storage_tensors` gives the arrays that are written; `stored_state` the float tensors a reader rebuilds
from them, so the encoder can evaluate exactly the model a reader will see.
"""

from __future__ import annotations

import json

import numpy as np
import torch

from .errors import FileFormatError

GRID = "grid"
GRID_QUANT = "grid_quant"  # (2, C): scale, offset
WEIGHTS = "weights"
WEIGHTS_LAYOUT = "weights_layout"  # JSON [[name, shape], ...], stored as an attribute of WEIGHTS


def quantize_grid(grid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(C, ...) float grid -> uint8 codes, per-channel scale and offset (value = code * scale + offset)."""
    flat = grid.reshape(grid.shape[0], -1).astype(np.float32)
    offset = flat.min(axis=1)
    span = flat.max(axis=1) - offset
    scale = np.where(span > 0, span / 255.0, 1.0).astype(np.float32)
    codes = np.clip(np.rint((flat - offset[:, None]) / scale[:, None]), 0, 255).astype(np.uint8)
    return codes.reshape(grid.shape), scale, offset.astype(np.float32)


def dequantize_grid(codes: np.ndarray, scale: np.ndarray, offset: np.ndarray) -> np.ndarray:
    shape = (-1,) + (1,) * (codes.ndim - 1)
    return codes.astype(np.float32) * scale.reshape(shape) + offset.reshape(shape)


def storage_tensors(model: torch.nn.Module) -> tuple[dict[str, np.ndarray], str]:
    """The arrays to write and the JSON layout of the packed weights."""
    state = {name: t.detach().cpu().numpy() for name, t in model.state_dict().items()}
    codes, scale, offset = quantize_grid(state.pop(GRID))
    layout = [[name, list(array.shape)] for name, array in state.items()]
    packed = np.concatenate([a.reshape(-1) for a in state.values()]).astype(np.float16)
    stored = {GRID: codes, GRID_QUANT: np.stack([scale, offset]), WEIGHTS: packed}
    return stored, json.dumps(layout)


def stored_state(stored: dict[str, np.ndarray], layout_json: str) -> dict[str, torch.Tensor]:
    """The float32 state dict a reader rebuilds from stored arrays; FileFormatError when they disagree."""
    try:
        layout = json.loads(layout_json)
        codes, quant, packed = stored[GRID], stored[GRID_QUANT], stored[WEIGHTS]
    except (KeyError, json.JSONDecodeError) as exc:
        raise FileFormatError(f"missing or unreadable tensor data ({exc})") from None
    if codes.dtype != np.uint8 or quant.shape != (2, codes.shape[0]) or packed.ndim != 1:
        raise FileFormatError("grid codes, grid scale/offset or packed weights have the wrong type or shape")
    state = {GRID: torch.from_numpy(dequantize_grid(codes, quant[0], quant[1]))}
    start = 0
    for name, shape in layout:
        size = int(np.prod(shape))
        if start + size > packed.size:
            raise FileFormatError("packed weights are shorter than their layout")
        state[name] = torch.from_numpy(packed[start:start + size].astype(np.float32).reshape(shape))
        start += size
    if start != packed.size:
        raise FileFormatError("packed weights are longer than their layout")
    return state


def apply_storage_precision(model: torch.nn.Module) -> tuple[dict[str, np.ndarray], str]:
    """Round the model's parameters to what will be stored; return the stored arrays and layout."""
    stored, layout = storage_tensors(model)
    device = next(model.parameters()).device
    model.load_state_dict({k: v.to(device) for k, v in stored_state(stored, layout).items()})
    return stored, layout
