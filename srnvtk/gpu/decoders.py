"""The fused Triton lattice decoders (srnvtk/gpu/kernels.py): a model's pieces packed once, one launch per slab.

An evaluator has the contract of the other lattice evaluators (srnvtk.decode._lattice_evaluator): called with
normalised lattice axes xs, ys, zs (1D tensors on its device) it returns the float32 values [z, y, x]. Beside that,
`denormalized` writes the denormalised values straight in the output's dtype on the device (rounded and clipped
for integers), so only the final bytes cross to the host.

Packing: every width is padded with zero units to a power of two of at least 16 (what Triton's products and
ranges need): a padded unit's pre-activation is 0, Snake(0) = sin(0) = 0, and its outgoing weights are 0, so it
changes nothing. fV-SRN's grid is stored channels last (padded channels are zero, as are their weights) so that a
voxel's corner is one contiguous read; its position and Fourier inputs are per-axis tables, as in
srnvtk.lattice, and the trilinear weights are that module's axis_weights (clamped at the border like
grid_sample). Neurcomp is packed from its inference form (srnvtk.neurcomp_eval.FoldedNeurcomp).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..lattice import LatticeFVSRN, axis_weights
from ..models import FVSRN, Neurcomp
from ..models.layers import Snake
from ..neurcomp_eval import FoldedNeurcomp
from . import SIN_MODES, interpreting, load_kernels, runs_on

MAX_WIDTH = 128  # wider MLPs (or more grid channels than MAX_CHANNELS) keep the torch paths: registers run out
MAX_CHANNELS = 64
# Tiles and warps, chosen without a GPU from ptxas's report for sm_90 (benchmarks/gpu_compile.py, triton 3.9):
# with fp16 products (tensor cores) 128 voxels per tile and 8 warps spill nothing (fV-SRN 204 registers, Neurcomp
# 238), where 4 warps spill (255 registers, 300 bytes); fp32 products are multiply-adds whose operands need more
# registers: 64 voxels per tile (Neurcomp still spills 300 bytes, a tenth of what 128 do). benchmarks/gpu_decode.py
# times other choices on a GPU.
BLOCK = {True: 128, False: 64}  # voxels per tile, by fp16 products: the M of every product (at least 16)
NUM_WARPS = 8
MAX_COLS = 128  # a tile covers up to this many voxels of one row, else several rows
PROGRAMS_PER_SM = 8  # persistent programs per multiprocessor on a GPU
INTERPRETER_PROGRAMS = 2  # the interpreter runs programs one after another: two exercise the persistent loop
SLAB_POINTS = 1 << 26  # voxels per launch (srnvtk.decode slabs the output by this): 256 MB of float32
# Output dtypes written directly (fp32 arithmetic is exact enough for them); others get float32 values that
# srnvtk.decode denormalises in float64. Not uint16: torch's support for it on CUDA is partial.
DIRECT_DTYPES = ("float32", "uint8", "int8", "int16")


def padded(n: int) -> int:
    """n rounded up to a power of two, at least 16."""
    return max(16, 1 << max(0, n - 1).bit_length())


def build_evaluator(model: nn.Module, dtype: torch.dtype = torch.float32, sin: str | None = None):
    """TritonFVSRN / TritonNeurcomp for the model on its device, or None where the kernels do not apply."""
    if dtype not in (torch.float32, torch.float16):
        return None
    parameter = next(model.parameters(), None)
    if parameter is None or not runs_on(parameter.device):
        return None
    if sin is None:
        sin = "approx" if dtype == torch.float16 and not interpreting() else "poly"
    if sin not in SIN_MODES:
        raise ValueError(f"sin must be one of {', '.join(SIN_MODES)}, got {sin!r}")
    if sin == "approx" and interpreting():
        raise ValueError("sin='approx' needs a GPU (Triton's interpreter has no inline assembly)")
    try:
        if isinstance(model, FVSRN):
            return TritonFVSRN(model, dtype, sin)
        if isinstance(model, Neurcomp):
            return TritonNeurcomp(model, dtype, sin)
    except TypeError:  # masks still attached, or layers the kernels do not cover
        return None
    return None


class _TritonLattice:
    """What both decoders share: the output, the tiling of the lattice and the launch."""

    slab_points = SLAB_POINTS

    def __init__(self, device: torch.device, dtype: torch.dtype, sin: str) -> None:
        self.device, self.half, self.sin = device, dtype == torch.float16, sin
        self.kernels = load_kernels()
        self.block, self.num_warps, self.programs_per_sm = BLOCK[self.half], NUM_WARPS, PROGRAMS_PER_SM

    def __call__(self, xs: torch.Tensor, ys: torch.Tensor, zs: torch.Tensor) -> torch.Tensor:
        """Normalised float32 values on the lattice zs x ys x xs (normalised coordinates), [z, y, x]."""
        out = torch.empty((len(zs), len(ys), len(xs)), dtype=torch.float32, device=self.device)
        self.fill(xs, ys, zs, out, 1.0, 0.0)
        return out

    def denormalized(self, xs: torch.Tensor, ys: torch.Tensor, zs: torch.Tensor, value_range: tuple[float, float],
                     dtype: str) -> torch.Tensor | None:
        """values * (vmax - vmin) + vmin in dtype on the device (integers rounded to nearest and clipped to the
        type), or None for a dtype not in DIRECT_DTYPES."""
        if np.dtype(dtype).name not in DIRECT_DTYPES:
            return None
        target = torch.from_numpy(np.empty(0, dtype=np.dtype(dtype))).dtype
        out = torch.empty((len(zs), len(ys), len(xs)), dtype=target, device=self.device)
        vmin, vmax = value_range
        self.fill(xs, ys, zs, out, vmax - vmin, vmin)
        return out

    def fill(self, xs: torch.Tensor, ys: torch.Tensor, zs: torch.Tensor, out: torch.Tensor, scale: float,
             offset: float) -> None:
        """out[z, y, x] = value * scale + offset (out: contiguous, on the device, any dtype)."""
        self.launch(self.prepare(xs, ys, zs), out, scale, offset)

    def prepare(self, xs: torch.Tensor, ys: torch.Tensor, zs: torch.Tensor) -> tuple[list, dict, tuple]:
        """What a launch on this lattice needs besides the output (a few small torch operations)."""
        return (*self.arguments(xs, ys, zs), (len(zs), len(ys), len(xs)))

    def launch(self, prepared: tuple[list, dict, tuple], out: torch.Tensor, scale: float, offset: float) -> None:
        """One kernel launch over out, for the lattice made ready by prepare."""
        arguments, named, lattice = prepared
        if tuple(out.shape) != lattice:  # the kernel trusts its indices
            raise ValueError(f"Triton decoder: output of shape {tuple(out.shape)} for a lattice of {lattice}")
        nz, ny, nx = out.shape
        if out.numel() == 0:
            return
        if not out.is_contiguous() or out.device != self.device:
            raise ValueError("Triton decoder: the output must be contiguous and on the model's device")
        cols = min(MAX_COLS, padded(nx), self.block)
        rows = self.block // cols
        n_tiles_x = -(-nx // cols)
        n_tiles = n_tiles_x * -(-(nz * ny) // rows)
        if self.device.type == "cuda":
            programs = torch.cuda.get_device_properties(self.device).multi_processor_count * self.programs_per_sm
        else:
            programs = INTERPRETER_PROGRAMS
        rounding = not out.dtype.is_floating_point
        low, high = (float(torch.iinfo(out.dtype).min), float(torch.iinfo(out.dtype).max)) if rounding else (0.0, 0.0)
        shape = dict(nx=nx, ny=ny, nrows=nz * ny, col_bits=cols.bit_length() - 1, n_tiles_x=n_tiles_x,
                     n_tiles=n_tiles, scale=float(scale), offset=float(offset), low=low, high=high, BLOCK=self.block,
                     ROUND=rounding)
        grid = (min(n_tiles, programs),)
        try:
            self.kernel[grid](out, *arguments, **named, **shape, SIN=SIN_MODES[self.sin], num_warps=self.num_warps)
        except Exception as error:  # any compiler failure of the approximate sines
            if self.sin != "approx":
                raise
            # The approximate instructions are inline assembly: should a Triton refuse them, keep decoding
            warnings.warn(f"Triton decoder: approximate sines failed ({type(error).__name__}: {error}); using the "
                          "polynomial", RuntimeWarning, stacklevel=2)
            self.sin = "poly"
            self.launch(prepared, out, scale, offset)

    def arguments(self, xs: torch.Tensor, ys: torch.Tensor, zs: torch.Tensor) -> tuple[list, dict]:
        """The kernel's model- and lattice-specific arguments: positional (after out), and named."""
        raise NotImplementedError


def _check_plain_mlp(layers: list[nn.Module], width: int) -> tuple[list[nn.Linear], nn.Linear]:
    """(hidden Linears, head) of (Linear width->width, Snake)* Linear width->1; TypeError otherwise."""
    linears = layers[0::2]
    if len(layers) % 2 == 0 or not all(isinstance(m, nn.Linear) for m in linears) or not all(
            isinstance(m, Snake) for m in layers[1::2]):
        raise TypeError("not a Linear, Snake, ... Linear MLP")
    if [(m.in_features, m.out_features) for m in linears] != [(width, width)] * (len(linears) - 1) + [(width, 1)]:
        raise TypeError("MLP layers of unequal widths")
    return linears[:-1], linears[-1]


def _pad(tensor: torch.Tensor, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """tensor in the top-left corner of zeros of this shape."""
    pads = []
    for size, target in zip(reversed(tensor.shape), reversed(shape), strict=True):
        pads += [0, target - size]
    return F.pad(tensor.detach().to(torch.float32), pads).to(dtype).contiguous()


class TritonFVSRN(_TritonLattice):
    """A plain (or pruned and baked, or wavelet) fV-SRN packed for fvsrn_lattice_kernel."""

    def __init__(self, model: FVSRN, dtype: torch.dtype = torch.float32, sin: str = "poly") -> None:
        lattice = LatticeFVSRN(model)  # TypeError: masks attached or not a plain MLP
        grid = lattice.grid  # a wavelet model's: its inverse DWT, computed once
        super().__init__(grid.device, dtype, sin)
        channels, depth, height, width_cells = grid.shape
        width = lattice.w_grid.shape[0]
        hidden, head = _check_plain_mlp(list(lattice.rest), width)
        if width > MAX_WIDTH or channels > MAX_CHANNELS or depth * height * width_cells * padded(channels) >= 2**31:
            raise TypeError("grid or MLP too large for the Triton kernel")
        self.lattice = lattice
        self.wp, self.cp = padded(width), padded(channels)
        operand = torch.float16 if self.half else torch.float32
        # (depth, height, width, CP): one voxel corner's channels are contiguous
        self.grid = _pad(grid.permute(1, 2, 3, 0), (depth, height, width_cells, self.cp), operand)
        self.grid_weight = _pad(lattice.w_grid.t(), (self.cp, self.wp), operand)
        if hidden:
            self.weights = torch.stack([_pad(m.weight.t(), (self.wp, self.wp), operand) for m in hidden])
            self.biases = torch.stack([_pad(m.bias, (self.wp,), torch.float32) for m in hidden])
        else:  # the kernel reads nothing from these
            self.weights = torch.zeros(1, dtype=operand, device=self.device)
            self.biases = torch.zeros(1, device=self.device)
        self.head = _pad(head.weight.reshape(-1), (self.wp,), torch.float32)
        self.head_bias = float(head.bias.detach())
        self.hidden = len(hidden)
        self.kernel = self.kernels.fvsrn_lattice_kernel

    def tables(self, xs: torch.Tensor, ys: torch.Tensor, zs: torch.Tensor) -> list[torch.Tensor]:
        """(n, WP) position/Fourier tables per axis (x, y, z); x's holds the first layer's bias.

        srnvtk.lattice.LatticeFVSRN.axis_table's sums, but one product at a time: a matrix product's rounding may
        depend on how many rows it has (the library picks its kernel by shape), and a voxel's value must not depend
        on the lattice it is decoded in."""
        lattice, fourier = self.lattice, self.lattice.fourier
        k = fourier.octaves
        tables = []
        for axis, coords in enumerate((xs, ys, zs)):
            coords = coords.to(torch.float32)
            table = coords[:, None] * lattice.w_pos[:, axis]
            if k:
                angles = coords[:, None] * fourier.aspect[axis] * fourier.frequencies  # (n, K)
                sines, cosines = torch.sin(angles), torch.cos(angles)
                for octave in range(k):  # FourierFeatures' order: [sin(x, k..), sin(y, ..), sin(z, ..), cos(x ..) ...]
                    table = table + sines[:, octave, None] * lattice.w_fourier[:, axis * k + octave]
                    table = table + cosines[:, octave, None] * lattice.w_fourier[:, 3 * k + axis * k + octave]
            tables.append(table)
        tables[0] = tables[0] + lattice.bias
        return [_pad(t, (t.shape[0], self.wp), torch.float32) for t in tables]

    def arguments(self, xs, ys, zs) -> tuple[list, dict]:
        depth, height, width_cells, _ = self.grid.shape
        weights = []
        for n, coords in ((width_cells, xs), (height, ys), (depth, zs)):
            lo, hi, t = axis_weights(n, coords)
            weights += [lo.to(torch.int32), hi.to(torch.int32), t.contiguous()]
        positional = [self.grid, self.grid_weight, self.weights, self.biases, self.head, self.head_bias, *weights,
                      *self.tables(xs, ys, zs)]
        return positional, dict(stride_z=height * width_cells * self.cp, stride_y=width_cells * self.cp, CP=self.cp,
                                WP=self.wp, HIDDEN=self.hidden, HALF=self.half)


class TritonNeurcomp(_TritonLattice):
    """A Neurcomp (residual or plain, pruned or clustered) in inference form, packed for neurcomp_lattice_kernel."""

    def __init__(self, model: Neurcomp, dtype: torch.dtype = torch.float32, sin: str = "poly") -> None:
        folded = FoldedNeurcomp(model)  # TypeError: masks still attached
        device = folded.layers[0][0].device
        super().__init__(device, dtype, sin)
        widths = [weight_t.shape[1] for weight_t, _ in folded.layers]
        if max(widths) > MAX_WIDTH:
            raise TypeError("Neurcomp too wide for the Triton kernel")
        self.wp = wp = padded(max(widths))
        self.blocks, self.residual = folded.blocks, folded.residual
        operand = torch.float16 if self.half else torch.float32
        first_t, first_bias = folded.layers[0]
        self.first = torch.cat([_pad(first_t, (3, wp), torch.float32), _pad(first_bias, (wp,), torch.float32)[None]])
        self.weights = torch.stack([_pad(w, (wp, wp), operand) for w, _ in folded.layers[1:]])
        self.biases = torch.stack([_pad(b, (wp,), torch.float32) for _, b in folded.layers[1:]])
        head_t, head_bias = folded.output
        self.head = _pad(head_t.reshape(-1), (wp,), torch.float32)
        self.head_bias = float(head_bias.reshape(-1)[0])
        self.kernel = self.kernels.neurcomp_lattice_kernel

    def arguments(self, xs, ys, zs) -> tuple[list, dict]:
        coords = [c.to(torch.float32).contiguous() for c in (xs, ys, zs)]
        positional = [*coords, self.first, self.weights, self.biases, self.head, self.head_bias]
        return positional, dict(WP=self.wp, BLOCKS=self.blocks, RESIDUAL=self.residual, HALF=self.half)
