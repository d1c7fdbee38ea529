"""A synthetic volume with sharp features: material interfaces, shock fronts and fine texture in some materials.

Where the turbulence field (benchmarks/synthetic.py) is smooth at the grid scale, this one is discontinuous
along surfaces, as multi-material and shocked flows are:
  materials   a Voronoi tessellation of the unit cube into MATERIALS cells, each of its own density; the cell
              walls are wrinkled by a smooth displacement of the coordinates, so they are curved, not planar
  texture     a third of the materials carry fine-scale -5/3 texture (benchmarks/synthetic.py) that stops at
              their walls, so edges of texture sit beside smooth regions
  blast waves BLASTS spherical fronts with rippled radii; inside, the density rises steeply towards the front
              (a Sedov-like shell) and drops by the shell's height across it
  a plane shock  a wrinkled front across the whole box: everything behind it is compressed by a constant
Values are float32 and roughly within [0, 2.5]. Deterministic: the same shape and seed always give the same array
(numpy's PCG64 and pocketfft).

    .venv/bin/python -m benchmarks.sharp_field out.vti --size 256 --seed 0
"""

from __future__ import annotations

import numpy as np

from srnvtk.datasets import default_geometry
from srnvtk.volume import Volume

MATERIALS = 24
BLASTS = 3
ARRAY_NAME = "density"


def _axes(shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Broadcastable z, y, x coordinates in [0, 1] (float32) of a [z, y, x] grid."""
    nz, ny, nx = shape
    longest = max(shape) - 1
    return (np.arange(nz, dtype=np.float32).reshape(nz, 1, 1) / longest,
            np.arange(ny, dtype=np.float32).reshape(1, ny, 1) / longest,
            np.arange(nx, dtype=np.float32).reshape(1, 1, nx) / longest)


def _materials(shape: tuple[int, int, int], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(cell index per voxel as uint8, density per cell): a Voronoi tessellation with wrinkled walls."""
    z, y, x = _axes(shape)
    phases = rng.uniform(0, 2 * np.pi, size=3).astype(np.float32)
    # Each coordinate displaced by a sine of another: walls bend, and the squared distances stay sums of 2D arrays.
    xs = x + np.float32(0.03) * np.sin(np.float32(6 * np.pi) * y + phases[0])
    ys = y + np.float32(0.03) * np.sin(np.float32(6 * np.pi) * z + phases[1])
    zs = z + np.float32(0.03) * np.sin(np.float32(6 * np.pi) * x + phases[2])
    seeds = rng.uniform(0, 1, size=(MATERIALS, 3)).astype(np.float32)
    densities = rng.uniform(0.1, 1.0, size=MATERIALS).astype(np.float32)
    best = np.full(shape, np.inf, dtype=np.float32)
    cell = np.zeros(shape, dtype=np.uint8)
    for index, (sx, sy, sz) in enumerate(seeds):
        distance = (xs - sx) ** 2 + (ys - sy) ** 2 + (zs - sz) ** 2
        closer = distance < best
        best[closer] = distance[closer]
        cell[closer] = index
    return cell, densities


def _blast(values: np.ndarray, rng: np.random.Generator) -> None:
    """Add one spherical blast wave in place: a shell rising as (r / R)^8 to its front at the rippled radius R."""
    z, y, x = _axes(values.shape)
    cz, cy, cx = rng.uniform(0.2, 0.8, size=3)
    radius = float(rng.uniform(0.12, 0.3))
    height = float(rng.uniform(0.4, 0.8))
    lobes = int(rng.integers(3, 7))
    dz, dy, dx = z - np.float32(cz), y - np.float32(cy), x - np.float32(cx)
    r = np.sqrt(dz**2 + dy**2 + dx**2)
    # Ripples of the front: a few lobes in azimuth and in the polar angle's cosine.
    azimuth = np.arctan2(dy, dx)
    cosine = dz / np.maximum(r, np.float32(1e-6))
    front = np.float32(radius) * (1 + np.float32(0.04) * np.sin(lobes * azimuth) * np.cos(np.float32(3) * cosine))
    inside = r < front
    values[inside] += np.float32(height) * (r[inside] / front[inside]) ** 8


def sharp_values(shape: tuple[int, int, int] = (256, 256, 256), seed: int = 0) -> np.ndarray:
    """The field as float32 values[z, y, x] (shape given as [z, y, x]); see the module's notes."""
    if len(shape) != 3 or min(shape) < 2:
        raise ValueError(f"shape must be three sizes >= 2, got {shape}")
    from benchmarks.synthetic import turbulence_values

    shape = tuple(int(s) for s in shape)
    rng = np.random.default_rng(seed)
    cell, densities = _materials(shape, rng)
    values = densities[cell]
    textured = np.zeros(MATERIALS, dtype=bool)
    textured[rng.choice(MATERIALS, size=MATERIALS // 3, replace=False)] = True
    texture = turbulence_values(shape, seed + 1, dissipation_fraction=0.8)
    where = textured[cell]
    values[where] += np.float32(0.08) * texture[where]
    del texture, where, cell
    for _ in range(BLASTS):
        _blast(values, rng)
    z, y, x = _axes(shape)
    phase = float(rng.uniform(0, 2 * np.pi))
    plane = np.float32(0.72) + np.float32(0.03) * np.sin(np.float32(4 * np.pi) * y + phase) * np.cos(
        np.float32(2 * np.pi) * z)
    values = np.where(x < plane, values * np.float32(1.35), values)
    return values.astype(np.float32)


def sharp_volume(size: int = 256, seed: int = 0) -> Volume:
    """A size^3 field on the project's default geometry (the unit cube, equal spacing)."""
    return Volume(sharp_values((size, size, size), seed), default_geometry((size, size, size)), ARRAY_NAME)


def main() -> None:
    from benchmarks.synthetic import write_volume_command

    write_volume_command(sharp_volume, __doc__)


if __name__ == "__main__":
    main()
