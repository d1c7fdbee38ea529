"""The Snake activation for training on the CPU with the C kernel (snake_kernel.c): one pass forward and one
backward instead of torch's eight or so.

`snake` returns None where the kernel does not apply (not the CPU, not float32, or no compiler:
srnvtk.native), and the caller computes Snake with torch instead.
"""

from __future__ import annotations

import ctypes

import torch

from . import load_kernel

_pointer, _int = ctypes.c_void_p, ctypes.c_int64


def _functions() -> tuple | None:
    """The kernel's forward and backward (load_kernel builds the library once per process)."""
    library = load_kernel("snake_kernel.c")
    if library is None:
        return None
    forward, backward = library.srn_snake_forward, library.srn_snake_backward
    forward.argtypes = [_pointer, _int, _pointer]
    backward.argtypes = [_pointer, _pointer, _int, _pointer]
    forward.restype = backward.restype = None
    return forward, backward


class _Snake(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, functions: tuple) -> torch.Tensor:
        values = x.detach().contiguous()
        out = torch.empty_like(values)
        functions[0](values.data_ptr(), values.numel(), out.data_ptr())
        ctx.save_for_backward(values)
        ctx.functions = functions
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        (values,) = ctx.saved_tensors
        grad = grad_out.detach().to(torch.float32).contiguous()
        grad_in = torch.empty_like(values)
        ctx.functions[1](values.data_ptr(), grad.data_ptr(), values.numel(), grad_in.data_ptr())
        return grad_in, None


def snake(x: torch.Tensor) -> torch.Tensor | None:
    """x + sin(x)^2 with the kernel (differentiable once), or None where it does not apply (see the module)."""
    if x.device.type != "cpu" or x.dtype != torch.float32:
        return None
    functions = _functions()
    if functions is None:
        return None
    return _Snake.apply(x, functions)
