"""Many networks in one file: fields, time steps and bricks, and how bricks are cut and blended.

A file holds one or more *parts*; a part is one network, for one field (a point array of 1 or 3 components),
one time step, and either the whole grid or one brick of it. Bricks cut the grid into boxes of `size` points per
axis; brick (i, j, k) covers the points [i*size - halo, (i+1)*size - 1 + halo] along x (likewise y and z),
clipped to the grid, so neighbouring bricks overlap by 2*halo points. Where they overlap, a reader blends them
with weights that fall linearly across the overlap and sum to one (`blend_weights`), so that values and their
gradients stay continuous across brick borders; with halo 0 every point belongs to exactly one brick.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .config import ModelConfig, PruningConfig
from .errors import SettingsError
from .quantize import StoredModel
from .volume import Geometry

if TYPE_CHECKING:
    from .delta import DeltaGrid


@dataclass(frozen=True)
class FieldInfo:
    """One point array: its name, type, components (1 or 3) and value range per component (empty where not yet
    known: a series described from its files' headers)."""

    name: str
    dtype: str
    components: int
    value_ranges: tuple[tuple[float, float], ...] = ()

    @property
    def is_vector(self) -> bool:
        return self.components == 3


@dataclass(frozen=True)
class BrickLayout:
    """How the grid is cut: brick size in points per axis (x, y, z) and the halo each brick adds on every side."""

    size: tuple[int, int, int]
    halo: int = 0

    def __post_init__(self) -> None:
        if len(self.size) != 3 or min(self.size) < 2 or self.halo < 0 or self.halo * 2 > min(self.size):
            raise SettingsError(f"a brick layout needs three sizes >= 2 and a halo of at most half the smallest, got "
                                f"size {tuple(self.size)} and halo {self.halo}")

    def counts(self, grid: Geometry) -> tuple[int, int, int]:
        """Bricks per axis (x, y, z) for this grid."""
        return tuple(-(-n // s) for n, s in zip(grid.dimensions, self.size, strict=True))

    def indices(self, grid: Geometry) -> list[tuple[int, int, int]]:
        """Every brick index (i, j, k), x fastest."""
        nx, ny, nz = self.counts(grid)
        return [(i, j, k) for k, j, i in itertools.product(range(nz), range(ny), range(nx))]

    def core(self, grid: Geometry, brick: tuple[int, int, int]) -> tuple[int, ...]:
        """The extent a brick is responsible for, without its halo."""
        extent = []
        for a in range(3):
            lo = grid.extent[2 * a] + brick[a] * self.size[a]
            extent += [lo, min(lo + self.size[a] - 1, grid.extent[2 * a + 1])]
        return tuple(extent)

    def extent(self, grid: Geometry, brick: tuple[int, int, int]) -> tuple[int, ...]:
        """The points a brick's network covers: its core and halo, clipped to the grid."""
        core = self.core(grid, brick)
        return tuple(max(core[2 * a] - self.halo, grid.extent[2 * a]) if side == 0 else
                     min(core[2 * a + 1] + self.halo, grid.extent[2 * a + 1])
                     for a in range(3) for side in (0, 1))


def brick_geometry(grid: Geometry, extent: tuple[int, ...]) -> Geometry:
    """The geometry of a part covering extent of the grid (same origin and spacing: the same world points)."""
    return Geometry(tuple(int(e) for e in extent), grid.origin, grid.spacing)


def blend_weights(points: np.ndarray, core: tuple[int, int], grid: tuple[int, int], halo: int) -> np.ndarray:
    """Weights along one axis of a brick for the given (possibly fractional) point indices: 1 inside the core away
    from a neighbour, falling linearly to 0 across the 2*halo points it shares with the neighbour on that side
    (none at the grid's edge). Adjacent bricks' weights sum to one at every point between them. Without a halo a
    point belongs to the brick whose core holds it, a point between two cores (a resampled grid's) to the upper
    one: the cores are widened by half a point, to [lo - 0.5, hi + 0.5)."""
    points = np.asarray(points, dtype=np.float64)
    weights = np.ones(points.shape, dtype=np.float64)
    if halo == 0:
        lo = core[0] - 0.5 if core[0] > grid[0] else -np.inf
        hi = core[1] + 0.5 if core[1] < grid[1] else np.inf
        return ((points >= lo) & (points < hi)).astype(np.float64)
    if core[0] > grid[0]:  # a neighbour below: the overlap is [core_lo - halo, core_lo + halo - 1]
        weights = np.minimum(weights, np.clip((points - (core[0] - halo) + 0.5) / (2 * halo), 0.0, 1.0))
    if core[1] < grid[1]:  # a neighbour above: [core_hi - halo + 1, core_hi + halo]
        weights = np.minimum(weights, np.clip((core[1] + halo - points + 0.5) / (2 * halo), 0.0, 1.0))
    return weights


@dataclass
class PartData:
    """One network as a writer hands it over."""

    field: int
    step: int
    brick: tuple[int, int, int] | None  # None: the whole grid
    model_config: ModelConfig
    pruning: PruningConfig
    stored: StoredModel  # a delta part's: its weights only (its grid is `delta`)
    stats: dict[str, float] = field(default_factory=dict)
    reference: int | None = None  # a delta part (format 11): the index of the part its grid differs from
    delta: DeltaGrid | None = None


@dataclass
class PartInfo:
    """One network as a reader sees it before loading it: what it covers, its settings and stored size."""

    index: int
    field: int
    step: int
    brick: tuple[int, int, int] | None
    extent: tuple[int, ...]  # the points it covers (its brick with halo, or the whole grid)
    model_config: ModelConfig
    pruning: PruningConfig
    structure: dict[str, Any]
    stats: dict[str, float] = field(default_factory=dict)
    stored_bytes: int = 0
    reference: int | None = None  # a delta part (format 11): the index of the part its grid differs from
