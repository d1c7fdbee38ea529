"""Training's trilinear lookup of an fV-SRN latent grid on the CPU with the C kernel (trilinear_kernel.c): the
values of grid_sample(bilinear, border, align_corners=True) and their gradient with respect to the grid.

`trilinear_features` returns None where the kernel does not apply (not the CPU, not float32, positions that need
a gradient, or no compiler: srnvtk.native), and the caller uses grid_sample instead.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import NamedTuple

import torch

from . import load_kernel

MAX_CHANNELS = 256  # FVSRNConfig.grid_channels' range: one build per channel count in use

_pointer, _int = ctypes.c_void_p, ctypes.c_int64
_ARGTYPES = [_pointer, _int, _pointer, _int, _int, _int, _pointer]


class _Kernel(NamedTuple):
    forward: Callable
    backward: Callable
    transpose: Callable  # (src, rows, cols, dst): between (C, points) planes and the (points, C) table


def _kernel(channels: int) -> _Kernel | None:
    """The kernel's functions for this channel count (load_kernel builds a library once per process)."""
    library = load_kernel("trilinear_kernel.c", {"CHANNELS": channels})
    if library is None:
        return None
    kernel = _Kernel(library.srn_trilinear_forward, library.srn_trilinear_backward, library.srn_transpose)
    for function in kernel[:2]:
        function.argtypes = _ARGTYPES
    kernel.transpose.argtypes = [_pointer, _int, _int, _pointer]
    for function in kernel:
        function.restype = None
    return kernel


def _address(tensor: torch.Tensor) -> int:
    return tensor.data_ptr()


class _Trilinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, grid: torch.Tensor, positions: torch.Tensor, kernel: _Kernel) -> torch.Tensor:
        channels, nz, ny, nx = grid.shape
        planes = grid.detach().contiguous()
        table = torch.empty((nz, ny, nx, channels), dtype=torch.float32)  # channels last: a corner is one short run
        kernel.transpose(_address(planes), channels, nz * ny * nx, _address(table))
        points = positions.detach().contiguous()
        out = torch.empty((points.shape[0], channels), dtype=torch.float32)
        kernel.forward(_address(points), points.shape[0], _address(table), nz, ny, nx, _address(out))
        ctx.save_for_backward(points)
        ctx.kernel, ctx.shape = kernel, (channels, nz, ny, nx)
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        (points,) = ctx.saved_tensors
        channels, nz, ny, nx = ctx.shape
        grad_table = torch.zeros((nz, ny, nx, channels), dtype=torch.float32)
        grad = grad_out.detach().to(torch.float32).contiguous()
        ctx.kernel.backward(_address(points), points.shape[0], _address(grad), nz, ny, nx, _address(grad_table))
        grad_grid = torch.empty(ctx.shape, dtype=torch.float32)
        ctx.kernel.transpose(_address(grad_table), nz * ny * nx, channels, _address(grad_grid))
        return grad_grid, None, None


def trilinear_features(grid: torch.Tensor, positions: torch.Tensor) -> torch.Tensor | None:
    """(N, C) features of the (C, z, y, x) grid at positions (N, 3; x, y, z in [-1, 1]) with the kernel, or None
    where it does not apply (see the module)."""
    if (grid.device.type != "cpu" or positions.device.type != "cpu" or grid.dtype != torch.float32
            or positions.dtype != torch.float32 or positions.requires_grad or grid.dim() != 4
            or positions.dim() != 2 or positions.shape[1] != 3 or not 1 <= grid.shape[0] <= MAX_CHANNELS):
        return None
    kernel = _kernel(int(grid.shape[0]))
    if kernel is None:
        return None
    return _Trilinear.apply(grid, positions, kernel)
