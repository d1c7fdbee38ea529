"""Training's trilinear lookup of an fV-SRN latent grid on the CPU with the C kernel (trilinear_kernel.c): the
values of grid_sample(bilinear, border, align_corners=True) and their gradient with respect to the grid.

`trilinear_features` returns None where the kernel does not apply (not the CPU, not float32, positions that need
a gradient, or no compiler: srnvtk.native), and the caller uses grid_sample instead.
"""

from __future__ import annotations

import ctypes

import torch

from . import load_kernel

MAX_CHANNELS = 256  # FVSRNConfig.grid_channels' range: one build per channel count in use

_pointer, _int = ctypes.c_void_p, ctypes.c_int64
_ARGTYPES = [_pointer, _int, _pointer, _int, _int, _int, _pointer]


def _functions(channels: int) -> tuple | None:
    """The kernel's two functions for this channel count (load_kernel builds a library once per process)."""
    library = load_kernel("trilinear_kernel.c", {"CHANNELS": channels})
    if library is None:
        return None
    forward, backward = library.srn_trilinear_forward, library.srn_trilinear_backward
    for function in (forward, backward):
        function.argtypes = _ARGTYPES
        function.restype = None
    return forward, backward


def _address(tensor: torch.Tensor) -> int:
    return tensor.data_ptr()


class _Trilinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, grid: torch.Tensor, positions: torch.Tensor, functions: tuple) -> torch.Tensor:
        channels, nz, ny, nx = grid.shape
        table = grid.detach().permute(1, 2, 3, 0).contiguous()  # channels last: a corner is one short run
        points = positions.detach().contiguous()
        out = torch.empty((points.shape[0], channels), dtype=torch.float32)
        functions[0](_address(points), points.shape[0], _address(table), nz, ny, nx, _address(out))
        ctx.save_for_backward(points)
        ctx.functions, ctx.shape = functions, (channels, nz, ny, nx)
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        (points,) = ctx.saved_tensors
        channels, nz, ny, nx = ctx.shape
        grad_table = torch.zeros((nz, ny, nx, channels), dtype=torch.float32)
        grad = grad_out.detach().to(torch.float32).contiguous()
        ctx.functions[1](_address(points), points.shape[0], _address(grad), nz, ny, nx, _address(grad_table))
        return grad_table.permute(3, 0, 1, 2).contiguous(), None, None


def trilinear_features(grid: torch.Tensor, positions: torch.Tensor) -> torch.Tensor | None:
    """(N, C) features of the (C, z, y, x) grid at positions (N, 3; x, y, z in [-1, 1]) with the kernel, or None
    where it does not apply (see the module)."""
    if (grid.device.type != "cpu" or positions.device.type != "cpu" or grid.dtype != torch.float32
            or positions.dtype != torch.float32 or positions.requires_grad or grid.dim() != 4
            or positions.dim() != 2 or positions.shape[1] != 3 or not 1 <= grid.shape[0] <= MAX_CHANNELS):
        return None
    functions = _functions(int(grid.shape[0]))
    if functions is None:
        return None
    return _Trilinear.apply(grid, positions, functions)
