"""Reconstruction: evaluate a trained network on any uniform grid, in bounded-memory batches.

Output grids are described by a Geometry in world coordinates, so the same code serves the original
grid, strided subsamples, target dimensions (up- or downsampling) and any sub-extent or piece.
"""

from __future__ import annotations

import copy
import dataclasses
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch

from .config import PRECISIONS, DecodeConfig
from .devices import resolve_device, torch_threads
from .errorbound import BoundedField, is_integer_dtype, lattice_indices
from .errors import FileFormatError, SettingsError
from .lattice import CPU_BLOCK_POINTS, LatticeFVSRN
from .models import FVSRN, Neurcomp
from .native.neurcomp import FusedNeurcomp
from .neurcomp_eval import FoldedNeurcomp
from .parallel import default_threads
from .parts import blend_weights, brick_geometry
from .sampling import normalized_axis
from .volume import Geometry

if TYPE_CHECKING:
    from .fileformat import SRNFile

DEFAULT_BATCH_POINTS = 1 << 18  # points per block handed to the network (bounds the memory)
# The fused CPU kernels' memory does not grow with their block (only the block's output does): larger blocks
# let their threads share the work with fewer hand-overs.
FUSED_SLAB_POINTS = 1 << 22
# Neurcomp on the CPU: blocks whose activations (width floats per point) stay near the caches.
NEURCOMP_CPU_BLOCK_POINTS = 1 << 14


def strided_geometry(
    source: Geometry, stride: tuple[int, int, int], region: tuple[int, ...] | None = None
) -> Geometry:
    """Every stride-th source point inside region (source index space; whole grid when None).

    Output point index j sits on source point j * stride, so world positions stay consistent
    across strides and pieces.
    """
    if len(stride) != 3 or min(stride) < 1:
        raise SettingsError(f"stride must be three integers >= 1, got {tuple(stride)}")
    region = clip_extent(source.extent, region)
    extent = []
    for a in range(3):
        lo = -((-region[2 * a]) // stride[a])  # ceil division
        hi = region[2 * a + 1] // stride[a]
        if hi < lo:
            raise SettingsError(f"stride {stride[a]} leaves no point of region {region} along axis {'xyz'[a]}")
        extent += [lo, hi]
    spacing = tuple(source.spacing[a] * stride[a] for a in range(3))
    return Geometry(tuple(extent), source.origin, spacing)


def resampled_geometry(
    source: Geometry, dimensions: tuple[int, int, int], region: tuple[int, ...] | None = None
) -> Geometry:
    """A grid of the given point counts spanning region's world bounds (up- or downsampling)."""
    if len(dimensions) != 3 or min(dimensions) < 1:
        raise SettingsError(f"dimensions must be three integers >= 1, got {tuple(dimensions)}")
    region = clip_extent(source.extent, region)
    origin, spacing = [], []
    for a in range(3):
        lo = source.origin[a] + region[2 * a] * source.spacing[a]
        hi = source.origin[a] + region[2 * a + 1] * source.spacing[a]
        n = dimensions[a]
        origin.append(lo)
        spacing.append((hi - lo) / (n - 1) if n > 1 and hi > lo else source.spacing[a])
    extent = (0, dimensions[0] - 1, 0, dimensions[1] - 1, 0, dimensions[2] - 1)
    return Geometry(extent, tuple(origin), tuple(spacing))


def clip_extent(whole: tuple[int, ...], region: tuple[int, ...] | None) -> tuple[int, ...]:
    """region intersected with whole; an error when they do not overlap or region is malformed."""
    if region is None:
        return tuple(whole)
    if len(region) != 6:
        raise SettingsError(f"an extent has six values (i0 i1 j0 j1 k0 k1), got {tuple(region)}")
    out = []
    for a in range(3):
        lo, hi = max(region[2 * a], whole[2 * a]), min(region[2 * a + 1], whole[2 * a + 1])
        if hi < lo:
            raise SettingsError(f"extent {tuple(region)} lies outside the grid {tuple(whole)}")
        out += [lo, hi]
    return tuple(out)


def world_axis(geometry: Geometry, axis: int) -> np.ndarray:
    """World coordinates of the grid's points along one axis (0 = x)."""
    lo, hi = geometry.extent[2 * axis], geometry.extent[2 * axis + 1]
    return geometry.origin[axis] + geometry.spacing[axis] * np.arange(lo, hi + 1, dtype=np.float64)


def to_dtype(values: torch.Tensor | np.ndarray, dtype: str, in_place: bool = False) -> np.ndarray:
    """Cast reconstructed values to the source type on their device (rounding and clipping integers),
    so that only the final bytes cross to the host. in_place: values (floating point) may be overwritten."""
    if isinstance(values, np.ndarray):
        values = torch.from_numpy(values)
    target = np.dtype(dtype)
    if target.kind in "iu":
        info = np.iinfo(target)
        values = (values.round_() if in_place else values.round()).clamp_(info.min, info.max)
    torch_dtype = torch.from_numpy(np.empty(0, dtype=target)).dtype
    return values.to(torch_dtype).cpu().numpy()


# 'auto' takes half precision only where it costs no accuracy: its values on a probe lattice (this many points
# per axis) within HALF_TOLERANCE of fp32's, in units of the value range (the network's normalised output).
HALF_PROBE_POINTS = 17
HALF_TOLERANCE = 1e-3


def half_precision_error(model: torch.nn.Module, device: torch.device) -> float:
    """Largest difference between the network's half- and single-precision output on a probe lattice over its
    whole domain, as a fraction of the value range (0 when the architecture has no half-precision path)."""
    if not isinstance(model, (FVSRN, Neurcomp)):
        return 0.0
    axis = torch.linspace(-1.0, 1.0, HALF_PROBE_POINTS, device=device)
    model = _on_device(model, device)
    with torch.inference_mode():
        half, _ = _lattice_evaluator(model, torch.float16, None)
        full, _ = _lattice_evaluator(model, torch.float32, None)
        return float((half(axis, axis, axis) - full(axis, axis, axis)).abs().max())


def use_half_precision(model: torch.nn.Module, device: torch.device, precision: str) -> bool:
    """fp16 only on CUDA: when asked for, or for 'auto' when half_precision_error is within HALF_TOLERANCE."""
    if device.type != "cuda" or precision == "fp32":
        return False
    return precision == "fp16" or half_precision_error(model, device) <= HALF_TOLERANCE


def output_grid(source: Geometry, config: DecodeConfig) -> Geometry:
    """The grid a reader reconstructs for these settings: resampled dimensions, or every stride-th point, of
    the whole source grid or of the settings' sub-extent."""
    if config.dimensions is not None:
        return resampled_geometry(source, config.dimensions, config.extent)
    return strided_geometry(source, config.stride, config.extent)


@torch.inference_mode()
def decode(
    srn: SRNFile,
    output: Geometry | None = None,
    *,
    field: int = 0,
    step: int = 0,
    device: str = "auto",
    precision: str = "fp32",
    threads: int = 0,
    batch_points: int | None = None,
    progress: Callable[[float], None] | None = None,
    dtype: str | None = None,
) -> np.ndarray:
    """Values[z, y, x] of one field at one time step of a file (or of a freshly trained network) on the output
    grid (the source grid when None), denormalised and cast to dtype (None: the field's type, as a reader gives
    it). Of a bricked file only the bricks that meet the output are evaluated (and read); where bricks overlap,
    their values are blended (srnvtk.parts.blend_weights).

    precision 'fp16' runs the MLP in half precision on CUDA; 'auto' does so where a probe shows it within 1e-3
    of the value range of fp32 (use_half_precision); the CPU always uses fp32.
    threads: CPU threads for this decode (0: srnvtk.parallel.default_threads(), torch's count shared between the
    MPI ranks on this machine); torch's own count is restored afterwards.
    batch_points: points decoded per block (bounds the working memory); None picks it per evaluation path.
    The caller's model stays where it is: another device gets a copy. CUDA running out of memory falls back to
    the CPU with a warning.
    A file with an error bound (srn.bound) gets its residual at every output point on the source lattice (the
    bound holds there: whole, strided, sub-extent, piece), none on a resampled grid (bound_applies); such a
    file always decodes in fp32, and one without a network predicts the value range's minimum.
    """
    if batch_points is not None and batch_points < 1:
        raise SettingsError("batch_points must be >= 1")
    if precision not in PRECISIONS:
        raise SettingsError(f"precision must be one of {', '.join(PRECISIONS)}, got '{precision}'")
    if threads < 0:
        raise SettingsError("threads must be >= 0")
    parts = srn.parts_of(field, step)
    info = srn.fields[field]
    if info.components != 1 and srn.bricks is not None:
        raise SettingsError(f"field '{info.name}' is a vector stored in bricks, which srnvtk does not decode")
    if srn.bound is not None:
        precision = "fp32"  # the residual's margin covers fp32 differences between paths, not fp16's
    # A vector's values come back as [z, y, x, component], each component denormalised by its own range.
    value_range = info.value_ranges[0] if info.components == 1 else tuple(info.value_ranges)
    request = _Request(output or srn.geometry, value_range, dtype or info.dtype, batch_points, precision,
                       progress)
    torch_device = resolve_device(device)
    with torch_threads(threads or default_threads()):
        try:
            return _decode_parts(srn, parts, request, torch_device)
        except torch.cuda.OutOfMemoryError:
            if torch_device.type != "cuda":
                raise
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            warnings.warn("CUDA ran out of memory while decoding; decoding on the CPU instead", RuntimeWarning,
                          stacklevel=2)
            return _decode_parts(srn, parts, dataclasses.replace(request, precision="fp32"), torch.device("cpu"))


@dataclasses.dataclass(frozen=True)
class _Request:
    output: Geometry
    value_range: tuple  # (min, max), or one (min, max) per component of a vector
    dtype: str
    batch_points: int | None
    precision: str
    progress: Callable[[float], None] | None


def _decode_parts(srn: SRNFile, parts: list, request: _Request, torch_device: torch.device) -> np.ndarray:
    if srn.bound is not None:  # one network (or none) and its residual
        model = None if srn.model is None else _on_device(srn.model, torch_device)
        return _decode_on(model, srn.geometry, request, torch_device, bounded_field(srn, request.output))
    if len(parts) == 1 and parts[0].brick is None:
        model = _on_device(srn.part_model(parts[0].index), torch_device)
        return _decode_on(model, srn.geometry, request, torch_device)
    return _decode_bricks(srn, parts, request, torch_device)


def _on_device(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """The model itself when it is on the device, else a copy there (never moves the caller's model)."""
    if model_device(model) == device:
        return model
    return copy.deepcopy(model).to(device).eval()


def _decode_on(model: torch.nn.Module | None, domain: Geometry, request: _Request, torch_device: torch.device,
               field: BoundedField | None = None) -> np.ndarray:
    """One network over the whole output; domain: the grid its inputs span (the source grid, or its brick).
    model None: a bounded file without a network (its residual is relative to the minimum); field: the error
    bound's residual, added at the output points on the source lattice."""
    output, dtype = request.output, request.dtype
    if model is None:
        def evaluate(xs: torch.Tensor, ys: torch.Tensor, zs: torch.Tensor) -> torch.Tensor:
            return torch.zeros((len(zs), len(ys), len(xs)), dtype=torch.float32, device=xs.device)

        slab_points = request.batch_points or FUSED_SLAB_POINTS
    else:
        half = use_half_precision(model, torch_device, request.precision)
        evaluate, slab_points = _lattice_evaluator(model, torch.float16 if half else torch.float32,
                                                   request.batch_points)
    nx, ny, nz = output.dimensions
    axes = [torch.from_numpy(normalized_axis(domain, a, world_axis(output, a))).to(torch_device) for a in range(3)]
    outputs = 1 if model is None else model_outputs(model)
    result = np.empty((nz, ny, nx) + ((outputs,) if outputs != 1 else ()), dtype=np.dtype(dtype))
    if outputs == 1:
        vmin, vmax = request.value_range
    else:  # per component (or one range for all), broadcast over the last axis
        ranges = torch.tensor(request.value_range, dtype=torch.float64, device=torch_device).reshape(-1, 2)
        vmin, vmax = ranges[:, 0], ranges[:, 1]
    slab = max(1, min(nz, slab_points // max(nx * ny, 1)))
    direct = getattr(evaluate, "denormalized", None)  # the GPU kernels write the output's dtype on the device
    for z0 in range(0, nz, slab):
        z1 = min(nz, z0 + slab)
        values = None
        if direct is not None and field is None:
            values = direct(axes[0], axes[1], axes[2][z0:z1], request.value_range, dtype)
        if values is not None:
            torch.from_numpy(result[z0:z1]).copy_(values)  # one copy, from the device into the array
        else:
            values = evaluate(axes[0], axes[1], axes[2][z0:z1]).to(torch.float64)
            values.mul_(vmax - vmin).add_(vmin)  # in place: at 10+ M voxels/s every pass over float64 tells
            if field is not None:  # the error bound's residual, at the points on the source lattice
                result[z0:z1] = field.apply(values.cpu().numpy(), z0, z1,
                                            lambda v: to_dtype(v, dtype, in_place=True))
            else:
                result[z0:z1] = to_dtype(values, dtype, in_place=True)
        if request.progress is not None:
            request.progress(z1 / nz)
    return result


def bounded_field(srn: SRNFile, output: Geometry) -> BoundedField | None:
    """The residual that keeps a bounded file's error bound at the output's points; None for a file without a
    bound or an output grid not on the source lattice (where the bound does not apply)."""
    if srn.bound is None:
        return None
    indices = lattice_indices(srn.source.geometry, output)
    if indices is None:
        return None
    return BoundedField(srn.bound, indices, is_integer_dtype(srn.source.dtype))


def bound_applies(srn: SRNFile, output: Geometry) -> bool:
    """Whether the file's error bound holds on this output grid: it has one and the grid is on the source
    lattice (whole, strided, a sub-extent or a piece; not resampled)."""
    return srn.bound is not None and lattice_indices(srn.source.geometry, output) is not None


def _decode_bricks(srn: SRNFile, parts: list, request: _Request, torch_device: torch.device) -> np.ndarray:
    """Every brick that meets the output (srnvtk.bricks.bricks_meeting: only those are read), evaluated on the
    output points its weights cover, multiplied by its separable weights (srnvtk.parts.blend_weights, which sum to
    one) and summed in float32 (float64 for a float64 output). Bricks are taken one layer along z at a time, and
    rows that no later layer reaches are cast into the result at once: beyond the result only about one layer of
    bricks' rows is held in float."""
    from .bricks import bricks_meeting, point_indices

    output, grid, layout = request.output, srn.geometry, srn.bricks
    by_brick = {part.brick: part for part in parts}
    nx, ny, nz = output.dimensions
    result = np.empty((nz, ny, nx), dtype=np.dtype(request.dtype))
    accumulate = np.float64 if np.dtype(request.dtype) == np.float64 else np.float32
    positions = [point_indices(grid, output, a) for a in range(3)]  # in the source grid's index space
    layers: dict[int, list] = {}
    meeting = bricks_meeting(grid, layout, output)
    for brick in meeting:
        core = layout.core(grid, brick)
        weights, ranges = [], []
        for a in range(3):
            w = blend_weights(positions[a], (core[2 * a], core[2 * a + 1]),
                              (grid.extent[2 * a], grid.extent[2 * a + 1]), layout.halo)
            nonzero = np.flatnonzero(w)
            if nonzero.size == 0:
                break
            ranges.append((int(nonzero[0]), int(nonzero[-1]) + 1))
            weights.append(w[ranges[-1][0]:ranges[-1][1]].astype(accumulate))
        else:
            if brick not in by_brick:
                raise FileFormatError(f"the file has no brick {brick} for this field and step")
            layers.setdefault(brick[2], []).append((by_brick[brick], ranges, weights))
    order = sorted(layers)
    window = np.zeros((0, ny, nx), dtype=accumulate)
    w0, done = 0, 0  # w0: the first output row the window holds (rows before it are in the result)
    for n, k in enumerate(order):
        z_end = max(ranges[2][1] for _, ranges, _ in layers[k])
        if w0 + len(window) < z_end:
            window = np.concatenate([window, np.zeros((z_end - w0 - len(window), ny, nx), dtype=accumulate)])
        for part, ranges, weights in layers[k]:
            sub = Geometry(tuple(output.extent[2 * a] + r for a in range(3) for r in (ranges[a][0], ranges[a][1] - 1)),
                           output.origin, output.spacing)
            model = _on_device(srn.part_model(part.index), torch_device)
            piece = _decode_on(model, brick_geometry(grid, part.extent),
                               dataclasses.replace(request, output=sub, dtype=np.dtype(accumulate).name, progress=None),
                               torch_device)
            piece *= weights[2][:, None, None]
            piece *= weights[1][None, :, None]
            piece *= weights[0][None, None, :]
            (x0, x1), (y0, y1), (z0, z1) = ranges
            window[z0 - w0:z1 - w0, y0:y1, x0:x1] += piece
            done += 1
            if request.progress is not None:
                request.progress(done / len(meeting))
        final = min(r[2][0] for _, r, _ in layers[order[n + 1]]) if n + 1 < len(order) else nz
        if final > w0:
            result[w0:final] = to_dtype(window[:final - w0], request.dtype, in_place=True)
            window = window[final - w0:]
            w0 = final
    if w0 < nz:
        raise FileFormatError("the file's bricks do not cover the requested grid")
    return result


def evaluation_path(model: torch.nn.Module | None) -> str:
    """How decode evaluates this model on the device it is on now, for reports: 'fused C kernel' (the CPU, a
    compiler at hand), 'Triton kernel' (CUDA, triton at hand), 'torch lattice' (fV-SRN), 'torch inference form'
    (Neurcomp) or 'torch network'; 'no network' for a bounded file that holds only its residual."""
    if model is None:
        return "no network"
    if _gpu_evaluator(model, torch.float32) is not None:
        return "Triton kernel"
    if model_outputs(model) != 1:
        return "torch network"
    if isinstance(model, FVSRN):
        try:
            lattice = LatticeFVSRN(model)
        except TypeError:
            return "torch network"
        return "fused C kernel" if lattice.fused is not None else "torch lattice"
    if isinstance(model, Neurcomp):
        return "fused C kernel" if FusedNeurcomp.build(FoldedNeurcomp(model)) is not None else "torch inference form"
    return "torch network"


def model_outputs(model: torch.nn.Module) -> int:
    """Values per point: 1 for a scalar network, 3 for a vector field's."""
    return model.config.outputs


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def lattice_batch_points(device: torch.device) -> int:
    """Points per block: cache-sized on the CPU; on a GPU about a quarter of the free memory at ~1 kB each."""
    if device.type != "cuda":
        return CPU_BLOCK_POINTS
    free, _total = torch.cuda.mem_get_info(device)
    return int(max(1 << 16, min(1 << 24, free // 4 // 1024)))


def _gpu_evaluator(model: torch.nn.Module, dtype: torch.dtype):
    """The fused Triton kernels (srnvtk.gpu) for a model on CUDA; None elsewhere, and where triton is missing or the
    model is not covered (the torch paths then decode)."""
    if model_device(model).type != "cuda" or model_outputs(model) != 1:  # the kernels write one value per point
        return None
    from .gpu import lattice_evaluator

    return lattice_evaluator(model, dtype)


def _lattice_evaluator(model: torch.nn.Module, dtype: torch.dtype, batch_points: int | None):
    """The fast separable path for plain fV-SRNs, else a per-point evaluation (Neurcomp's in inference form);
    with the number of points to hand it at a time (batch_points, or the path's own default when None)."""
    gpu = _gpu_evaluator(model, dtype)
    if gpu is not None:
        return gpu, batch_points or gpu.slab_points
    outputs = model_outputs(model)  # the lattice and fused kernels are for scalars: a vector goes point by point
    if outputs == 1 and isinstance(model, FVSRN):
        try:
            lattice = LatticeFVSRN(model, dtype)
        except TypeError:
            pass
        else:
            points = lattice_batch_points(model_device(model))
            if batch_points is None:
                batch_points = FUSED_SLAB_POINTS if lattice.fused is not None else DEFAULT_BATCH_POINTS
            return (lambda xs, ys, zs: lattice.evaluate(xs, ys, zs, points)), batch_points
    network = model
    if isinstance(model, Neurcomp) and outputs == 1:
        network = FoldedNeurcomp(model)
        fused = FusedNeurcomp.build(network)
        if fused is not None:
            return fused.evaluate, batch_points or FUSED_SLAB_POINTS
        if model_device(model).type == "cpu":
            batch_points = min(batch_points or DEFAULT_BATCH_POINTS, NEURCOMP_CPU_BLOCK_POINTS)
    batch_points = batch_points or DEFAULT_BATCH_POINTS

    def per_point(xs: torch.Tensor, ys: torch.Tensor, zs: torch.Tensor) -> torch.Tensor:
        shape = (len(zs), len(ys), len(xs)) + ((outputs,) if outputs != 1 else ())
        out = torch.empty(shape, dtype=torch.float32, device=xs.device)
        rows = max(1, min(len(ys), batch_points // len(xs)))
        for z in range(len(zs)):
            for y0 in range(0, len(ys), rows):
                y1 = min(len(ys), y0 + rows)
                zz, yy, xx = torch.meshgrid(zs[z:z + 1], ys[y0:y1], xs, indexing="ij")
                positions = torch.stack([xx.reshape(-1), yy.reshape(-1), zz.reshape(-1)], dim=1)
                out[z, y0:y1] = network(positions).reshape(y1 - y0, *shape[2:]).to(torch.float32)
        return out

    return per_point, batch_points
