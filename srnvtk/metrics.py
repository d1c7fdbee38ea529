"""Quality and size measures, one definition for the whole project."""

from __future__ import annotations

import math

import numpy as np


def psnr(reference: np.ndarray, reconstruction: np.ndarray, value_range: float | None = None) -> float:
    """20 log10(range / RMSE), range = max - min of the reference unless given."""
    ref = np.asarray(reference, dtype=np.float64)
    rec = np.asarray(reconstruction, dtype=np.float64)
    if value_range is None:
        value_range = float(ref.max() - ref.min())
    return psnr_from_mse(chunked_mse(ref, rec), value_range)


def psnr_from_mse(mse: float, value_range: float) -> float:
    """20 log10(range) - 10 log10(MSE): the PSNR of a mean squared error already summed elsewhere (inf at 0)."""
    if mse == 0.0:
        return math.inf
    return 20.0 * math.log10(value_range) - 10.0 * math.log10(mse)


def chunked_mse(a: np.ndarray, b: np.ndarray, chunk: int = 1 << 22) -> float:
    """Mean squared difference without materialising a second full-size float64 copy."""
    fa, fb = a.reshape(-1), b.reshape(-1)
    total = 0.0
    for start in range(0, fa.size, chunk):
        d = fa[start:start + chunk].astype(np.float64) - fb[start:start + chunk]
        total += float(np.dot(d, d))
    return total / max(fa.size, 1)


def compression_ratio(num_values: int, file_bytes: int) -> float:
    """float32 bytes of the volume over the bytes of the compressed file."""
    return 4.0 * num_values / file_bytes
