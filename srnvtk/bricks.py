"""Bricks: a volume cut into boxes, each compressed by its own small network.

Why: a volume that does not fit one process (1024^3 float32 is 4 GiB, 4096^3 is 256 GiB) is compressed brick by
brick, by as many processes as there are (srnvtk.distributed), each holding one brick at a time; a reader
decodes only the bricks that meet the piece it is asked for.

Layout. Bricks of `size` points per axis (x, y, z) tile the grid from its first point; the last brick along an
axis takes what is left. Brick (i, j, k) is responsible for its *core*, points [i*size, (i+1)*size - 1] along x
(likewise y, z), and its network is trained on the core plus a *halo* of `halo` points on every side (clipped to
the grid), so neighbouring networks overlap by 2*halo points.

Borders. Where networks overlap, a reader blends them with weights that fall linearly from 1 to 0 across the
overlap and sum to one at every point (srnvtk.parts.blend_weights, separable over the axes; srnvtk.decode):
values and their gradients stay continuous across brick borders instead of jumping where one network hands over
to the next. Without a halo each point belongs to one brick and borders show as seams; benchmarks/README.md
measures PSNR on border voxels against interior ones for both.

Seeds. Every brick trains with a seed derived from the run's seed and its index (`brick_seed`), never from the
order or the process it is trained in: a serial run and any number of MPI ranks make the same network for a
brick, bit for bit on the CPU.

Value range. Every brick is trained on the whole volume's value range (its output [0, 1] stands for the same
values in every brick), so a reader needs one range per field and a constant brick is no error.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from .config import FVSRNConfig, ModelConfig, PruningConfig, TrainConfig
from .errors import SettingsError
from .metrics import psnr, psnr_from_mse
from .models.protocol import SRNModel
from .parts import BrickLayout, brick_geometry
from .ratecontrol import LATENT_HEADROOM, MLP_SHARE, mlp_bytes, shrink_mlp
from .volume import Geometry, Volume

Brick = tuple[int, int, int]  # brick index (i, j, k) along x, y, z
Extent = tuple[int, int, int, int, int, int]

MIN_BRICK_POINTS = 2  # a network needs two points along every axis (srnvtk.volume.validate_for_training)


def layout_for(grid: Geometry, size: int | tuple[int, int, int], halo: int) -> BrickLayout:
    """The layout of bricks of `size` points (one size for every axis, or x y z) with `halo`, checked against the
    grid: SettingsError for a size or halo that leaves a brick too thin to train."""
    sizes = (size,) * 3 if isinstance(size, int) else tuple(size)
    if len(sizes) != 3 or min(sizes) < 2:
        raise SettingsError(f"brick size must be at least 2 points, got {size}")
    if halo < 0 or 2 * halo > min(sizes):
        raise SettingsError(f"the halo ({halo} points) must be between 0 and half the brick size ({min(sizes)})")
    layout = BrickLayout(sizes, halo)
    for a, axis in enumerate("xyz"):
        n = grid.dimensions[a]
        last = n - (layout.counts(grid)[a] - 1) * sizes[a]  # points in the last brick's core
        if n > 1 and last + (halo if last < n else 0) < MIN_BRICK_POINTS:
            raise SettingsError(f"brick size {sizes[a]} leaves a brick of {last} point along {axis} (the grid has "
                                f"{n}); choose a size that leaves at least {MIN_BRICK_POINTS} points, or a halo")
    return layout


def brick_seed(seed: int, brick: Brick) -> int:
    """The training seed of one brick: from the run's seed and the brick's index only (see the module)."""
    state = np.random.SeedSequence([int(seed), *(int(b) for b in brick)]).generate_state(1, dtype=np.uint32)
    return int(state[0]) & 0x7FFFFFFF


def extent_slices(grid: Geometry, extent: Extent) -> tuple[slice, slice, slice]:
    """The [z, y, x] slices of a grid's values that hold extent."""
    return tuple(slice(extent[2 * a] - grid.extent[2 * a], extent[2 * a + 1] - grid.extent[2 * a] + 1)
                 for a in (2, 1, 0))


def brick_volume(volume: Volume, layout: BrickLayout, brick: Brick) -> Volume:
    """The brick's training data (core and halo) as a Volume; a view of the volume's values, no copy."""
    extent = layout.extent(volume.geometry, brick)
    return Volume(volume.values[extent_slices(volume.geometry, extent)], brick_geometry(volume.geometry, extent),
                  volume.name)


def support(core: tuple[int, int], grid: tuple[int, int], halo: int) -> tuple[float, float]:
    """The interval of point indices where a brick's weight along one axis is not zero (closed at both ends, a
    superset for halo 0)."""
    lo = core[0] - halo - 0.5 if core[0] > grid[0] else -math.inf
    hi = core[1] + halo + 0.5 if core[1] < grid[1] else math.inf
    return lo, hi


def point_indices(grid: Geometry, output: Geometry, axis: int) -> np.ndarray:
    """The (fractional) index in grid's lattice of each of output's points along one axis."""
    lo, hi = output.extent[2 * axis], output.extent[2 * axis + 1]
    world = output.origin[axis] + output.spacing[axis] * np.arange(lo, hi + 1, dtype=np.float64)
    return (world - grid.origin[axis]) / grid.spacing[axis]


def bricks_meeting(grid: Geometry, layout: BrickLayout, output: Geometry) -> list[Brick]:
    """The bricks whose weights are not zero somewhere on the output grid, x fastest: the only ones a decode
    must read. Found per axis from the layout's arithmetic, not by trying every brick."""
    ranges = []
    counts = layout.counts(grid)
    for a in range(3):
        points = point_indices(grid, output, a)
        lo, hi = float(points.min()), float(points.max())
        first = grid.extent[2 * a]
        # brick i's support reaches [first + i*size - halo - 0.5, first + (i+1)*size - 1 + halo + 0.5]
        i0 = max(0, math.floor((lo - first - layout.halo - 0.5) / layout.size[a]))
        i1 = min(counts[a] - 1, math.floor((hi - first + layout.halo + 0.5) / layout.size[a]))
        found = []
        for i in range(i0, i1 + 1):
            core = layout.core(grid, tuple(i if b == a else 0 for b in range(3)))
            if _overlaps(support((core[2 * a], core[2 * a + 1]), (grid.extent[2 * a], grid.extent[2 * a + 1]),
                                 layout.halo), (lo, hi)):
                found.append(i)
        ranges.append(found)
    return [(i, j, k) for k in ranges[2] for j in ranges[1] for i in ranges[0]]


def _overlaps(interval: tuple[float, float], points: tuple[float, float]) -> bool:
    return interval[0] <= points[1] and points[0] <= interval[1]


# ---------------------------------------------------------------------------------------------------------------
# training


@dataclass
class TrainedBrick:
    """One brick's network at its stored precision, with what training recorded."""

    brick: Brick
    extent: Extent  # the points it was trained on: core and halo
    model: SRNModel
    stats: dict[str, float] = field(default_factory=dict)


def train_brick(
    volume: Volume,
    brick: Brick,
    *,
    model_config: ModelConfig,
    train_config: TrainConfig,
    value_range: tuple[float, float],
    pruning: PruningConfig | None = None,
    fit: Callable[[SRNModel], None] | None = None,
    final_fit: Callable[[SRNModel], None] | None = None,
    progress: Callable[[float, str], None] | None = None,
    should_abort: Callable[[], bool] | None = None,
) -> TrainedBrick:
    """Train one brick's network on its data (`brick_volume`) with the brick's own seed, then round it to the
    precision a file stores, so that what the caller evaluates is what a reader will see.

    fit: the trainer's rate fit (srnvtk.train); final_fit runs once more after training (fine-tuning changed the
    codes and so what the coder makes of them)."""
    from .quantize import apply_storage_precision
    from .train import train

    config = dataclasses.replace(train_config, seed=brick_seed(train_config.seed, brick))
    result = train(volume, model_config, config, progress=progress, should_abort=should_abort, pruning=pruning,
                   fit=fit, value_range=value_range)
    if final_fit is not None:
        final_fit(result.model)
    apply_storage_precision(result.model)
    stats = {"train_seconds": result.seconds, "steps": float(result.steps), "final_loss": result.final_loss}
    return TrainedBrick(brick, tuple(volume.geometry.extent), result.model, stats)


# ---------------------------------------------------------------------------------------------------------------
# bytes: each brick's share of the file, and a brick's model sized and fitted to it

# What a brick may cost in a file beyond its section: its index record and table entry (51 bytes,
# srnvtk.multipart.PART_BOOKKEEPING_BYTES) and a share of the header (the structures of grids that rate control
# grew): the 64-byte bound, so rate control's budget holds the whole file.
BRICK_BOOKKEEPING_BYTES = 64


def stored_config(config: FVSRNConfig) -> FVSRNConfig:
    """The settings a file stores for a brick: its grid shape is in its structure, so the resolution the planner
    chose (and rate control may have grown) is dropped for a fixed value, and bricks share one settings entry."""
    return dataclasses.replace(config, grid_resolution=2, grid_shape=None)


def brick_part_bytes(config: ModelConfig, stored, geometry: Geometry) -> int:
    """The bytes one brick adds to a file: its section coded as the writer codes it (srnvtk.multipart, format
    9) and BRICK_BOOKKEEPING_BYTES."""
    from .container import encode_section
    from .multipart import part_blob

    return len(encode_section(part_blob(config, stored, geometry)).data) + BRICK_BOOKKEEPING_BYTES


def brick_measure(model: SRNModel, geometry: Geometry) -> Callable[[torch.Tensor | None], int]:
    """The bytes of the model's brick if it kept only the given latent entries (None: its own)."""
    from .quantize import storage_tensors

    return lambda keep: brick_part_bytes(model.config, storage_tensors(model, keep), geometry)


def brick_fit(budget: int, geometry: Geometry, grow: bool = True) -> Callable[[SRNModel], None]:
    """The trainer's rate fit for one brick (srnvtk.budget's growth and trim, on the brick's bytes)."""
    from .budget import fit_measured

    return fit_measured(budget, lambda model: brick_measure(model, geometry), geometry, grow)


def plan_brick(budget: int, geometry: Geometry, base: FVSRNConfig, headroom: float = LATENT_HEADROOM,
               share: float = MLP_SHARE) -> FVSRNConfig:
    """The fV-SRN for one brick's byte budget: the MLP shrunk to its share (shrink_mlp), then the finest grid
    whose raw codes fit `headroom` times their share, one step finer (the fit trims after training)."""
    from .encoder import latent_code_bytes

    base = shrink_mlp(base, budget, share)
    fixed = mlp_bytes(base) + 8 * base.grid_channels + BRICK_BOOKKEEPING_BYTES
    best = None
    for resolution in range(2, 1025):
        candidate = dataclasses.replace(base, grid_resolution=resolution, grid_shape=None)
        if fixed + latent_code_bytes(candidate, geometry) / headroom > budget:
            break
        best = candidate
    if best is None:
        raise SettingsError(f"a brick's share of {budget} bytes is too small even for its network ({fixed} bytes); "
                            "choose a lower ratio or larger bricks")
    return dataclasses.replace(best, grid_resolution=best.grid_resolution + 1)


def brick_budgets(total: int, points: Sequence[int], complexity: Sequence[float] | None = None,
                  gamma: float = 0.0) -> list[int]:
    """Each brick's share of `total` bytes: in proportion to the points it is responsible for, times its
    complexity (relative to the mean) to the power gamma (0: by points alone)."""
    weights = np.asarray(points, dtype=np.float64)
    if complexity is not None and gamma:
        c = np.asarray(complexity, dtype=np.float64)
        mean = float(np.average(c, weights=weights)) if c.any() else 1.0
        weights = weights * np.power(np.maximum(c, 1e-6 * max(mean, 1e-12)) / max(mean, 1e-12), gamma)
    shares = weights / weights.sum()
    return [int(total * s) for s in shares]


def brick_complexity(values: np.ndarray, value_range: tuple[float, float], factor: int = 4) -> float:
    """How hard a brick is to fit, cheaply: the RMS (in units of the value range) of what its block means over
    factor^3 points leave unexplained."""
    v = (np.asarray(values, dtype=np.float32) - value_range[0]) / (value_range[1] - value_range[0])
    sides = [min(factor, n) for n in v.shape]  # a thin brick: thinner blocks
    shape = [n // f * f for n, f in zip(v.shape, sides, strict=True)]
    v = v[: shape[0], : shape[1], : shape[2]]
    blocks = v.reshape(shape[0] // sides[0], sides[0], shape[1] // sides[1], sides[1], shape[2] // sides[2], sides[2])
    means = blocks.mean(axis=(1, 3, 5), keepdims=True)
    return float(np.sqrt(np.mean(np.square(blocks - means))))


# ---------------------------------------------------------------------------------------------------------------
# decoding


def bricks_in_memory(models: dict[Brick, SRNModel], layout: BrickLayout, grid: Geometry,
                     value_range: tuple[float, float], dtype: str = "float32", name: str = "values"):
    """Trained brick networks as an srnvtk.fileformat.SRNFile of bricks (not written), for srnvtk.decode."""
    from .fileformat import SourceInfo, SRNFile
    from .parts import PartInfo

    bricks = [b for b in layout.indices(grid) if b in models]
    first = models[bricks[0]]
    parts = tuple(PartInfo(i, 0, 0, b, layout.extent(grid, b), models[b].config, PruningConfig(), {})
                  for i, b in enumerate(bricks))
    source = SourceInfo(name, dtype, grid, (float(value_range[0]), float(value_range[1])))
    return SRNFile(None, first.config, source, parts=parts, bricks=layout,
                   part_loader=lambda i: models[bricks[i]])


# ---------------------------------------------------------------------------------------------------------------
# measuring borders


def border_mask(grid: Geometry, layout: BrickLayout, width: int = 2) -> np.ndarray:
    """[z, y, x] bool: points within `width` points of a plane between two bricks' cores (the grid's own faces
    are not borders)."""
    masks = []
    for a in range(3):
        n = grid.dimensions[a]
        near = np.zeros(n, dtype=bool)
        for b in range(1, layout.counts(grid)[a]):
            plane = b * layout.size[a] - 0.5  # between the last point of one core and the first of the next
            points = np.arange(n)
            near |= np.abs(points - plane) <= width
        masks.append(near)
    mx, my, mz = masks
    return mz[:, None, None] | my[None, :, None] | mx[None, None, :]


def border_quality(reference: np.ndarray, reconstruction: np.ndarray, grid: Geometry, layout: BrickLayout,
                   value_range: float, width: int = 2) -> dict[str, float]:
    """PSNR over border points and over interior points (border_mask), and the same for the gradient (central
    differences along every axis, against the reference's): seams show as a lower border PSNR."""
    mask = border_mask(grid, layout, width)
    out = {"border_fraction": float(mask.mean())}
    ref = reference.astype(np.float32)
    rec = reconstruction.astype(np.float32)
    for region, where in (("border", mask), ("interior", ~mask)):
        out[f"psnr_{region}"] = psnr(ref[where], rec[where], value_range) if where.any() else math.nan
    grad_sq = {"border": 0.0, "interior": 0.0}
    count = {"border": 0, "interior": 0}
    for axis in range(3):
        da = np.diff(ref, axis=axis)
        db = np.diff(rec, axis=axis)
        # a difference between points p and p+1 is at a border when either point is
        sl_lo = [slice(None)] * 3
        sl_hi = [slice(None)] * 3
        sl_lo[axis] = slice(0, -1)
        sl_hi[axis] = slice(1, None)
        at = mask[tuple(sl_lo)] | mask[tuple(sl_hi)]
        err = (da - db).astype(np.float64) ** 2
        for region, where in (("border", at), ("interior", ~at)):
            grad_sq[region] += float(err[where].sum())
            count[region] += int(where.sum())
    for region in ("border", "interior"):
        out[f"gradient_psnr_{region}"] = psnr_from_mse(grad_sq[region] / max(count[region], 1), value_range)
    return out


