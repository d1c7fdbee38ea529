"""How tensors are stored: the latent grid as uint8 with a per-channel scale and offset, the rest as fp16.

`storage_tensors` gives what is written; `stored_state` the float tensors a reader rebuilds from them,
so the encoder can evaluate exactly the model a reader will see.
"""

from __future__ import annotations

import numpy as np
import torch

GRID_NAME = "grid"


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


def storage_tensors(model: torch.nn.Module) -> dict[str, np.ndarray]:
    """Every parameter in its stored form: grid codes (+ scale, offset) and fp16 weights."""
    stored: dict[str, np.ndarray] = {}
    for name, tensor in model.state_dict().items():
        array = tensor.detach().cpu().numpy()
        if name == GRID_NAME:
            codes, scale, offset = quantize_grid(array)
            stored[GRID_NAME] = codes
            stored[GRID_NAME + "_scale"] = scale
            stored[GRID_NAME + "_offset"] = offset
        else:
            stored[name] = array.astype(np.float16)
    return stored


def stored_state(stored: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """The float32 state dict a reader rebuilds from stored tensors."""
    state: dict[str, torch.Tensor] = {}
    for name, array in stored.items():
        if name in (GRID_NAME + "_scale", GRID_NAME + "_offset"):
            continue
        if name == GRID_NAME:
            array = dequantize_grid(array, stored[GRID_NAME + "_scale"], stored[GRID_NAME + "_offset"])
        state[name] = torch.from_numpy(np.asarray(array, dtype=np.float32))
    return state


def apply_storage_precision(model: torch.nn.Module) -> dict[str, np.ndarray]:
    """Round the model's parameters to what will be stored; return the stored tensors."""
    stored = storage_tensors(model)
    device = next(model.parameters()).device
    model.load_state_dict({k: v.to(device) for k, v in stored_state(stored).items()})
    return stored
