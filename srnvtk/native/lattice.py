"""The fused CPU lattice kernel (lattice_kernel.c): its arguments packed once per model, a call per piece."""

from __future__ import annotations

import ctypes

import torch
import torch.nn.functional as F
from torch import nn

from ..models.layers import Snake
from . import load_kernel

OUT_BLOCK = 8  # simd.h: the widths handed to the kernels are multiples of this


def padded_width(width: int) -> int:
    """width rounded up to a multiple of OUT_BLOCK (the kernels' padding with zero units)."""
    return -(-width // OUT_BLOCK) * OUT_BLOCK

_pointer, _int, _float = ctypes.c_void_p, ctypes.c_int64, ctypes.c_float
_ARGTYPES = [
    _pointer, _int, _int, _int, _int,  # latent grid (channels, depth, height, width in cells)
    _pointer, _int,  # the first layer's grid weights, transposed; the (padded) MLP width
    _pointer, _pointer, _pointer, _int,  # z: lo, hi, t, count
    _pointer, _pointer, _pointer, _int,  # y
    _pointer, _pointer, _pointer, _int,  # x
    _pointer, _pointer, _pointer,  # per-axis first-layer tables
    _pointer, _pointer, _int,  # hidden layers' transposed weights, biases, count
    _pointer, _float,  # head weights and bias
    _pointer,  # output
]

AxisWeights = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # lo (int64), hi (int64), t (float32) per point


class FusedLattice:
    """One fV-SRN's lattice pieces in the kernel's layout: the width padded with zero units (Snake(0) = 0 and
    their outgoing weights are zero, so they change nothing), weights transposed. The latent grid is used as the
    model holds it (channels first); the kernel projects the rows it needs through grid_weight itself."""

    def __init__(self, function, grid: torch.Tensor, grid_weight: torch.Tensor, hidden: list[nn.Linear],
                 head: nn.Linear) -> None:
        self.function = function
        width = grid_weight.shape[0]
        self.width = padded_width(width)
        pad = self.width - width
        self.grid = grid.detach().float().contiguous()
        self.grid_weight_t = F.pad(grid_weight.detach().float().t(), (0, pad)).contiguous()  # (channels, width)
        weights = [F.pad(layer.weight.detach().float().t(), (0, pad, 0, pad)) for layer in hidden]
        biases = [F.pad(layer.bias.detach().float(), (0, pad)) for layer in hidden]
        self.weights_t = torch.stack(weights).contiguous() if weights else torch.zeros(1)
        self.biases = torch.stack(biases).contiguous() if biases else torch.zeros(1)
        self.hidden = len(hidden)
        self.head = F.pad(head.weight.detach().float().reshape(-1), (0, pad)).contiguous()
        self.head_bias = float(head.bias.detach())

    @classmethod
    def build(cls, grid: torch.Tensor, grid_weight: torch.Tensor, layers: list[nn.Module]) -> FusedLattice | None:
        """None when the kernel cannot be built here or layers (after the first Linear and Snake) are not
        (Linear width->width, Snake)* then Linear width->1. grid: (channels, depth, height, width);
        grid_weight: (width, channels), the first layer's weights on the grid's channels."""
        linears = layers[0::2]
        width = grid_weight.shape[0]
        if grid.device.type != "cpu" or grid.dim() != 4 or grid_weight.shape[1] != grid.shape[0]:
            return None
        if len(layers) % 2 == 0:
            return None
        if not (all(isinstance(m, nn.Linear) for m in linears) and all(isinstance(m, Snake) for m in layers[1::2])):
            return None
        if [(m.in_features, m.out_features) for m in linears] != [(width, width)] * (len(linears) - 1) + [(width, 1)]:
            return None
        library = load_kernel("lattice_kernel.c", {"WIDTH": padded_width(width)})
        if library is None:
            return None
        function = library.srn_lattice_decode
        function.argtypes = _ARGTYPES
        function.restype = ctypes.c_int
        return cls(function, grid, grid_weight, linears[:-1], linears[-1])

    def pad_table(self, table: torch.Tensor) -> torch.Tensor:
        return F.pad(table.float(), (0, self.width - table.shape[-1])).contiguous()

    def run(self, z: AxisWeights, y: AxisWeights, x: AxisWeights, tables: list[torch.Tensor],
            out: torch.Tensor) -> None:
        """Fill out (len(z), len(y), len(x)), contiguous float32, from the padded (n, width) tables (x, y, z);
        the kernel releases the GIL (ctypes), so threads can run pieces side by side."""
        channels, depth, height, width_cells = self.grid.shape
        if len(tables) != 3:
            raise ValueError("lattice kernel: one table per axis")
        for (lo, hi, t), table, cells in zip((x, y, z), tables, (width_cells, height, depth), strict=True):
            well_typed = lo.dtype == hi.dtype == torch.int64 and t.dtype == torch.float32
            if not (well_typed and len(lo) == len(hi) == len(t) and table.shape == (len(t), self.width)):
                raise ValueError("lattice kernel: malformed axis weights or table")
            if len(t) and not (0 <= min(lo.min(), hi.min()) and max(lo.max(), hi.max()) < cells):  # C trusts them
                raise ValueError("lattice kernel: interpolation index outside the grid")
        if out.shape != (len(z[2]), len(y[2]), len(x[2])) or out.dtype != torch.float32 or not out.is_contiguous():
            raise ValueError("lattice kernel: output of the wrong shape or layout")
        arguments = [self.grid, self.grid_weight_t, *z, *y, *x, *tables, self.weights_t, self.biases, self.head,
                     out]
        if not all(tensor.is_contiguous() and tensor.device.type == "cpu" for tensor in arguments):
            raise ValueError("lattice kernel: arguments must be contiguous CPU tensors")
        status = self.function(
            _ptr(self.grid), channels, depth, height, width_cells, _ptr(self.grid_weight_t), self.width,
            *_axis(z), *_axis(y), *_axis(x),
            *(_ptr(table) for table in tables),
            _ptr(self.weights_t), _ptr(self.biases), self.hidden, _ptr(self.head), self.head_bias,
            _ptr(out),
        )
        if status == -1:
            raise MemoryError("lattice kernel: could not allocate its scratch memory")
        if status != 0:
            raise RuntimeError(f"lattice kernel: failed with status {status}")


def _ptr(tensor: torch.Tensor) -> int:
    return tensor.data_ptr()


def _axis(weights: AxisWeights) -> tuple:
    lo, hi, t = weights
    return _ptr(lo), _ptr(hi), _ptr(t), len(t)
