"""srnvtk's own test volume, generated procedurally: no downloaded data anywhere.

The field looks like a snapshot of a mixing layer: a heavy fluid below a light one, with the interface
perturbed by a few sine modes and rolled up into Kelvin-Helmholtz-like curls, plus a few Gaussian
blobs (bubbles and plumes) and a faint fine-scale texture. It is smooth enough for a network to learn
and structured enough that a poor fit shows. Only default_volume needs VTK.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from .errors import SettingsError
from .volume import Geometry

if TYPE_CHECKING:  # VTK is an optional dependency; only default_volume needs it
    from vtkmodules.vtkCommonDataModel import vtkImageData

ARRAY_NAME = "density"
DEFAULT_SHAPE = (64, 64, 64)
NUM_BLOBS = 6
NUM_MODES = 3


def default_geometry(shape: tuple[int, int, int] = DEFAULT_SHAPE) -> Geometry:
    """Origin 0, the same spacing on every axis, 1 / (n - 1) of the longest axis (which spans [0, 1])."""
    nx, ny, nz = _check_shape(shape)
    h = 1.0 / max(max(nx, ny, nz) - 1, 1)
    return Geometry((0, nx - 1, 0, ny - 1, 0, nz - 1), (0.0, 0.0, 0.0), (h, h, h))


def default_volume_values(shape: tuple[int, int, int] = DEFAULT_SHAPE, seed: int = 0) -> np.ndarray:
    """The field as uint8 values[z, y, x]; shape gives the point counts (nx, ny, nz) as VTK orders them.

    Deterministic: the same shape and seed always give the same array. The seed moves the blobs and
    shifts the phases of the interface's modes.
    """
    field = default_field(shape, seed)
    lo, hi = float(field.min()), float(field.max())
    nx, ny, nz = _check_shape(shape)
    if hi <= lo:  # only for a single point
        return np.zeros((nz, ny, nx), dtype=np.uint8)
    field -= lo
    field *= 255.0 / (hi - lo)
    np.rint(field, out=field)
    return field.astype(np.uint8)


def default_field(shape: tuple[int, int, int] = DEFAULT_SHAPE, seed: int = 0,
                  z_range: tuple[int, int] | None = None) -> np.ndarray:
    """The field before it is scaled to uint8, float32 values[z, y, x] of the planes z0 <= z < z1 (all of them
    when z_range is None). Every value depends on its own point alone, so a volume too large for memory is
    generated plane by plane and equals the whole one (default_volume_values scales it by its min and max)."""
    nx, ny, nz = _check_shape(shape)
    z0, z1 = (0, nz) if z_range is None else z_range
    if not 0 <= z0 < z1 <= nz:
        raise SettingsError(f"planes {z0}..{z1 - 1} are not within the {nz} planes")
    geometry = default_geometry((nx, ny, nz))
    h = geometry.spacing[0]
    rng = np.random.default_rng(seed)
    # World coordinates as broadcastable float32 axes; every axis spans [0, L] with L <= 1.
    x = (np.arange(nx, dtype=np.float32) * h).reshape(1, 1, nx)
    y = (np.arange(ny, dtype=np.float32) * h).reshape(1, ny, 1)
    z = (np.arange(z0, z1, dtype=np.float32) * h).reshape(z1 - z0, 1, 1)
    lx, ly, lz = (max((n - 1) * h, h) for n in (nx, ny, nz))

    # The interface height: a few sine modes over (x, y), a 2D array, cheap at any size.
    height = np.full((1, ny, nx), 0.5 * lz, dtype=np.float32)
    for k in range(1, NUM_MODES + 1):
        px, py = (float(p) for p in rng.uniform(0, 2 * np.pi, size=2))
        amplitude = 0.06 * lz / k
        height = height + amplitude * np.sin(2 * np.pi * k * x / lx + px) * np.cos(2 * np.pi * (k - 1) * y / ly + py)

    # Distance above the interface, then rolled up: near the interface (within a few widths) the level
    # set is shifted along x by an amount that depends on the distance itself, which folds it over.
    # Full-size arrays are updated in place (float32 throughout), which keeps 256^3 within a few seconds.
    width = 0.08 * lz
    phi = z - height
    near = np.multiply(phi, 1.0 / (1.5 * width))
    np.square(near, out=near)
    np.negative(near, out=near)
    np.exp(near, out=near)
    roll = np.multiply(phi, 3.0 / width)
    roll += (4 * np.pi / lx) * x + float(rng.uniform(0, 2 * np.pi))
    np.sin(roll, out=roll)
    roll *= near
    roll *= 1.4 * width
    roll += phi  # the rolled-up distance
    del near, phi
    roll *= 1.0 / (0.35 * width)
    field = np.tanh(roll, out=roll)
    # 0.5 * (1 - tanh): heavy fluid (1) below, light (0) above; mapped to [0.15, 0.8].
    field *= -0.325
    field += 0.475

    # Gaussian blobs; separable, so each costs one outer product of three 1D profiles.
    scratch = np.empty_like(field)
    for _ in range(NUM_BLOBS):
        cx, cy, cz = (float(c) for c in rng.uniform(0.15, 0.85, size=3) * (lx, ly, lz))
        sigma = float(rng.uniform(0.06, 0.14)) * max(lx, ly, lz)
        amplitude = float(rng.choice([-1.0, 1.0]) * rng.uniform(0.15, 0.3))
        gx = np.exp(-np.square(x - cx) / (2 * sigma**2))
        gy = np.exp(-np.square(y - cy) / (2 * sigma**2))
        gz = np.exp(-np.square(z - cz) / (2 * sigma**2)) * amplitude
        np.multiply(gz, gy * gx, out=scratch)
        field += scratch

    # Faint fine-scale texture, so flat regions are not perfectly flat.
    np.multiply(0.02 * np.sin(17.0 * z + 3.0), np.sin(23.0 * x + 1.0) * np.sin(19.0 * y + 2.0), out=scratch)
    field += scratch
    return field


SLAB_VALUES = 1 << 24  # values per slab when a volume is generated plane by plane (64 MiB of float32)


def default_slabs(shape: tuple[int, int, int], seed: int = 0, dtype: str = "uint8") -> Iterator[np.ndarray]:
    """The default volume as [z, y, x] slabs of whole planes, first to last, never more than one slab in memory:
    float32, the field as it is; uint8, scaled by the field's min and max (found by a first pass) exactly as
    default_volume_values scales it."""
    nx, ny, nz = _check_shape(shape)
    if dtype not in ("uint8", "float32"):
        raise SettingsError(f"the generated volume is uint8 or float32, not {dtype}")
    planes = max(1, SLAB_VALUES // (nx * ny))
    ranges = [(z, min(nz, z + planes)) for z in range(0, nz, planes)]
    if dtype == "float32":
        for z_range in ranges:
            yield default_field(shape, seed, z_range)
        return
    lo, hi = np.inf, -np.inf
    for z_range in ranges:
        field = default_field(shape, seed, z_range)
        lo, hi = min(lo, float(field.min())), max(hi, float(field.max()))
    for z_range in ranges:
        field = default_field(shape, seed, z_range)
        if hi <= lo:
            yield np.zeros(field.shape, dtype=np.uint8)
            continue
        field -= lo
        field *= 255.0 / (hi - lo)
        np.rint(field, out=field)
        yield field.astype(np.uint8)


def default_volume(shape: tuple[int, int, int] = DEFAULT_SHAPE, seed: int = 0) -> vtkImageData:
    """The field as a vtkImageData with one uint8 point array, 'density' (also the active scalars)."""
    from .vtkio import image_from_arrays

    values = default_volume_values(shape, seed)
    return image_from_arrays(default_geometry(shape), {ARRAY_NAME: values}, active=ARRAY_NAME)


def _check_shape(shape: tuple[int, int, int]) -> tuple[int, int, int]:
    try:
        sizes = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise SettingsError(f"shape must be three point counts (nx, ny, nz), got {shape!r}") from None
    if len(sizes) != 3 or min(sizes) < 1 or max(sizes) > 4096:
        raise SettingsError(f"shape must be three point counts (nx, ny, nz) in [1, 4096], got {tuple(shape)}")
    return sizes
