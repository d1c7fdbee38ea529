"""The classic lossy codecs, each behind one interface: encode(values, parameter) -> Encoded, decode.

Every codec gets a C-contiguous float32 [z, y, x] array. Error-bound parameters are given relative to the
value range (the codec receives parameter * range); rates are bits per value. nbytes is what the ratio
counts, float32 bytes / nbytes; each codec says what it covers (bytes_counted).

- SZ3 (pysz): absolute error bound, OpenMP off.
- ZFP (zfpy): fixed-rate mode (the reference table's mode; the lowest rate zfpy survives in 3D is
  9 bits per 4^3 block, 9/64 bit/value, ratio 227: zfpy 1.0.1 segfaults below) and fixed-accuracy mode.
- SPERR (hdf5plugin's H5Z-SPERR filter): fixed rate, the volume as one HDF5 chunk of an in-memory file;
  nbytes is the chunk's stored size (the dataset's storage size), not the HDF5 file's own structure.
  Rates below 0.01 bit/value are never tried (the filter crashed there).
- TTHRESH (numcodecs-wasm-tthresh, the WebAssembly build, not the native tool): RMSE bound, on bricks of
  at most 64^3. The WebAssembly decoder fails an Eigen bounds assertion on whole volumes: in our tests
  every tensor with a mode of n points and Tucker rank r with n * r >= 8192 (e.g. 128^3 at rank 64, any
  96^3+ noisy field) did not decode, so a 256^3 volume cannot be decoded in one piece. Bricks of 64^3 keep
  n * r <= 4096 (--tthresh-brick 128 decodes only where the ranks stay below 64, i.e. at high ratios).
  Bricking costs TTHRESH compression (separate bases and headers per brick, a few hundred bytes at least);
  nbytes is the sum of the bricks' streams plus 4 bytes per brick for its length.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from importlib import metadata
from typing import Any

import numpy as np

ZFP_MIN_RATE = 9.0 / 64.0  # 3D float: 1 + 8 exponent bits per 4^3 block
SPERR_MIN_RATE = 0.01
TTHRESH_BRICK = 64
# Above about 0.1 x range the WebAssembly TTHRESH's output grows again with the RMSE bound (64^3 bricks of the
# Richtmyer-Meshkov volume: ratio 319 at 0.1, 193 at 0.3, 142 at 1.0), so the search stays below.
TTHRESH_LARGEST_BOUND = 0.05
BRICK_LENGTH_BYTES = 4


@dataclass(frozen=True)
class Encoded:
    payload: Any
    nbytes: int


@dataclass(frozen=True)
class Codec:
    name: str
    label: str
    parameter: str  # what the searched parameter means
    relative: bool  # the codec receives parameter * value range
    small_end: float  # the parameter giving the smallest output
    large_end: float  # ... and the largest output worth trying (beyond every target ratio)
    bytes_counted: str
    package: str  # the distribution whose version is recorded
    encode: Callable[[np.ndarray, float], Encoded]
    decode: Callable[[Encoded, tuple[int, ...]], np.ndarray]


def sz3_encode(values: np.ndarray, bound: float) -> Encoded:
    import pysz

    config = pysz.szConfig()
    config.errorBoundMode = pysz.szErrorBoundMode.ABS
    config.absErrorBound = float(bound)
    config.openmp = False
    compressed, _ = pysz.sz.compress(values, config)
    return Encoded(compressed, int(compressed.nbytes))


def sz3_decode(encoded: Encoded, shape: tuple[int, ...]) -> np.ndarray:
    import pysz

    values, _ = pysz.sz.decompress(encoded.payload, np.float32, shape)
    return values


def zfp_encode(values: np.ndarray, parameter: float, mode: str) -> Encoded:
    import zfpy

    if mode == "rate":
        stream = zfpy.compress_numpy(values, rate=max(float(parameter), ZFP_MIN_RATE))
    else:
        stream = zfpy.compress_numpy(values, tolerance=float(parameter))
    return Encoded(stream, len(stream))


def zfp_decode(encoded: Encoded, shape: tuple[int, ...]) -> np.ndarray:
    import zfpy

    return zfpy.decompress_numpy(encoded.payload).reshape(shape)


def sperr_encode(values: np.ndarray, rate: float) -> Encoded:
    import h5py
    import hdf5plugin

    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        rate = max(float(rate), SPERR_MIN_RATE)
        dataset = f.create_dataset("v", data=values, chunks=values.shape, **hdf5plugin.Sperr(rate=rate))
        stored = dataset.id.get_storage_size()
    return Encoded(buffer.getvalue(), int(stored))


def sperr_decode(encoded: Encoded, shape: tuple[int, ...]) -> np.ndarray:
    import h5py
    import hdf5plugin  # noqa: F401  (registers the filter)

    with h5py.File(io.BytesIO(encoded.payload), "r") as f:
        return f["v"][...].reshape(shape)


def brick_slices(shape: tuple[int, ...], brick: int) -> Iterator[tuple[slice, ...]]:
    """Split every axis into ceil(n / brick) near-equal parts (none larger than brick); all combinations."""
    bounds = []
    for n in shape:
        parts = max(1, math.ceil(n / brick))
        edges = np.linspace(0, n, parts + 1).round().astype(int)
        bounds.append([slice(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True)])
    for sz in bounds[0]:
        for sy in bounds[1]:
            for sx in bounds[2]:
                yield (sz, sy, sx)


def tthresh_encode(values: np.ndarray, rmse: float, brick: int = TTHRESH_BRICK) -> Encoded:
    from numcodecs_wasm_tthresh import Tthresh

    codec = Tthresh(eb_mode="rmse", eb_rmse=float(rmse))
    streams = [np.asarray(codec.encode(np.ascontiguousarray(values[s]))) for s in brick_slices(values.shape, brick)]
    return Encoded((brick, streams), sum(s.nbytes + BRICK_LENGTH_BYTES for s in streams))


def tthresh_decode(encoded: Encoded, shape: tuple[int, ...]) -> np.ndarray:
    from numcodecs_wasm_tthresh import Tthresh

    brick, streams = encoded.payload
    codec = Tthresh(eb_mode="rmse", eb_rmse=1.0)  # decoding reads everything it needs from the stream
    out = np.empty(shape, dtype=np.float32)
    for s, stream in zip(brick_slices(shape, brick), streams, strict=True):
        out[s] = np.asarray(codec.decode(stream)).reshape(out[s].shape)
    return out


def classic_codecs(tthresh_brick: int = TTHRESH_BRICK) -> dict[str, Codec]:
    """Every classic codec by its command-line name (TTHRESH's row name adds the brick size), in table order."""
    codecs = [
        Codec("sz3", "SZ3", "absolute error bound / value range", True, 0.5, 1e-7,
              "the SZ3 stream", "pysz", sz3_encode, sz3_decode),
        Codec("zfp-rate", "ZFP (rate)", "bits per value (fixed rate)", False, ZFP_MIN_RATE, 16.0,
              "the zfpy stream (with its header)", "zfpy", partial(zfp_encode, mode="rate"), zfp_decode),
        Codec("zfp-accuracy", "ZFP (accuracy)", "absolute tolerance / value range", True, 64.0, 1e-7,
              "the zfpy stream (with its header)", "zfpy", partial(zfp_encode, mode="accuracy"), zfp_decode),
        Codec("sperr", "SPERR", "bits per value (fixed rate)", False, SPERR_MIN_RATE, 16.0,
              "the HDF5 chunk's stored bytes (dataset storage size), without the file's HDF5 structure",
              "hdf5plugin", sperr_encode, sperr_decode),
        Codec(f"tthresh-b{tthresh_brick}", f"TTHRESH (wasm, {tthresh_brick}^3 bricks)", "RMSE bound / value range",
              True, TTHRESH_LARGEST_BOUND, 1e-4,
              f"the bricks' streams + {BRICK_LENGTH_BYTES} bytes per brick", "numcodecs-wasm-tthresh",
              partial(tthresh_encode, brick=tthresh_brick), tthresh_decode),
    ]
    return {c.name.split("-b")[0]: c for c in codecs}


def package_version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None
