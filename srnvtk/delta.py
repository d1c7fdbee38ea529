"""Delta parts (format 11, srnvtk.multipart): a later time step's latent grid stored as small integer differences
to the grid a reader rebuilds for the previous step of the same field.

A delta part's latent grid is

    grid = reference + codes * unit          (float32 arithmetic, `reconstruct`)

where reference is the (C, z, y, x) grid a reader rebuilds for the part it references (a full part's dequantized
codes, zero where pruned, or another delta part's grid), codes are int8 in [-DELTA_LIMIT, DELTA_LIMIT] of the same
shape, and unit is one float32 per channel: the encoder passes on the key frame's quantization scale, so a kept
difference is as fine as a full part's code. Only the largest differences are kept (`keep_largest`); the others
are zero codes, which the section coder (srnvtk.container.encode_section) squeezes to almost nothing. The encoder
builds every next reference with `reconstruct`, exactly as a reader does, so no error drifts along a chain.

A delta part's section, before coding: its float16 MLP weights (in the order a full part stores them), the unit
(C float32), then the codes (C * z * y * x int8).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .config import FVSRNConfig, ModelConfig
from .errors import FileFormatError
from .filechecks import GRID, WEIGHTS, tensor_specs
from .quantize import StoredModel
from .volume import Geometry

DELTA_LIMIT = 127  # int8 codes, symmetric so that a difference and its negation cost the same


@dataclass
class DeltaGrid:
    """A delta part's grid as the file stores it: int8 codes of the differences and the unit per channel."""

    codes: np.ndarray  # int8 (C, z, y, x)
    unit: np.ndarray  # float32 (C,)


def can_be_delta(config: ModelConfig) -> bool:
    """Whether a part of these settings can be stored as a delta: a plain fV-SRN grid (a wavelet model's latent
    tensor holds coefficients, not the grid the reference is)."""
    return isinstance(config, FVSRNConfig) and config.wavelet is None


def delta_codes(target: np.ndarray, reference: np.ndarray, unit: np.ndarray) -> np.ndarray:
    """The differences target - reference in units, rounded to int8 (clipped to +-DELTA_LIMIT)."""
    steps = (target.astype(np.float64) - reference.astype(np.float64)) / unit.astype(np.float64)[:, None, None, None]
    return np.clip(np.rint(steps), -DELTA_LIMIT, DELTA_LIMIT).astype(np.int8)


def largest_first(codes: np.ndarray) -> np.ndarray:
    """The flat indices of the nonzero codes, largest magnitude first (ties: the earlier entries)."""
    flat = codes.reshape(-1)
    order = np.argsort(-np.abs(flat.astype(np.int16)), kind="stable")
    return order[:np.count_nonzero(flat)]


def keep_largest(codes: np.ndarray, count: int, order: np.ndarray | None = None) -> np.ndarray:
    """The codes with all but the count largest in magnitude set to zero; order: largest_first(codes), when
    known."""
    order = (largest_first(codes) if order is None else order)[:max(count, 0)]
    flat = codes.reshape(-1)
    kept = np.zeros_like(flat)
    kept[order] = flat[order]
    return kept.reshape(codes.shape)


def reconstruct(reference: np.ndarray, delta: DeltaGrid) -> np.ndarray:
    """The grid a reader rebuilds: reference + codes * unit, in float32."""
    unit = delta.unit.astype(np.float32)[:, None, None, None]
    return (reference.astype(np.float32) + delta.codes.astype(np.float32) * unit).astype(np.float32)


def delta_blob(weights: bytes, delta: DeltaGrid) -> bytes:
    """A delta part's section before coding (see the module): weights, unit, codes."""
    return (weights + np.ascontiguousarray(delta.unit, dtype="<f4").tobytes()
            + np.ascontiguousarray(delta.codes, dtype=np.int8).tobytes())


def delta_section_bytes(config: ModelConfig, structure: dict, geometry: Geometry) -> int:
    """The exact decoded size of a delta part's section for these settings and structure."""
    specs = tensor_specs(config, structure, geometry).specs
    grid = specs[GRID].shape
    return math.prod(specs[WEIGHTS].shape) * specs[WEIGHTS].dtype.itemsize + 4 * grid[0] + math.prod(grid)


def delta_stored(config: ModelConfig, structure: dict, geometry: Geometry,
                 data: bytes) -> tuple[StoredModel, DeltaGrid]:
    """A delta part's weights (as a StoredModel without a grid) and its DeltaGrid, from its section's decoded
    bytes (whose size the reader checked)."""
    plan = tensor_specs(config, structure, geometry)
    spec, grid = plan.specs[WEIGHTS], plan.specs[GRID].shape
    count = math.prod(spec.shape)
    weights = np.frombuffer(data, dtype=spec.dtype, count=count).reshape(spec.shape).copy()
    offset = count * spec.dtype.itemsize
    unit = np.frombuffer(data, dtype="<f4", count=grid[0], offset=offset).copy()
    if not (np.isfinite(unit).all() and (unit > 0).all()):
        raise FileFormatError("a delta part's unit is not a positive finite number per channel")
    codes = np.frombuffer(data, dtype=np.int8, offset=offset + 4 * grid[0]).reshape(grid).copy()
    if codes.size and int(np.abs(codes.astype(np.int16)).max()) > DELTA_LIMIT:
        raise FileFormatError(f"a delta part's codes reach beyond +-{DELTA_LIMIT}")
    layout = [[name, list(shape)] for name, shape in plan.weights_layout.items()]
    return StoredModel({WEIGHTS: weights}, layout, structure), DeltaGrid(codes, unit)
