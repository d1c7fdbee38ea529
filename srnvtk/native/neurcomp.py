"""The fused CPU Neurcomp kernel (neurcomp_kernel.c): a folded network's layers packed once, a call per piece."""

from __future__ import annotations

import ctypes

import torch
import torch.nn.functional as F

from ..parallel import Piece, fill_lattice
from . import load_kernel
from .lattice import padded_width

_pointer, _int = ctypes.c_void_p, ctypes.c_int64
_ARGTYPES = [
    _pointer, _int, _pointer, _int, _pointer, _int,  # x, y, z coordinates and their counts
    _int, ctypes.c_int32, _pointer,  # blocks, residual, widths
    _pointer, _pointer,  # transposed weights, biases (every layer, one after another)
    _pointer, ctypes.c_float,  # head weights and bias
    _pointer,  # output
]


class FusedNeurcomp:
    """A FoldedNeurcomp's layers in the kernel's layout: every width padded with zero units (sin(0) = 0, and
    their outgoing weights are zero, so they change nothing)."""

    def __init__(self, function, layers: list[tuple[torch.Tensor, torch.Tensor]], output, blocks: int,
                 residual: bool) -> None:
        self.function = function
        self.blocks, self.residual = blocks, residual
        widths, weights, biases = [], [], []
        previous = 3  # the positions are not padded: the kernel reads exactly three inputs
        for weight_t, bias in layers:
            width = padded_width(weight_t.shape[1])
            weights.append(F.pad(weight_t, (0, width - weight_t.shape[1], 0, previous - weight_t.shape[0])).reshape(-1))
            biases.append(F.pad(bias, (0, width - bias.shape[0])))
            widths.append(width)
            previous = width
        self.widths = torch.tensor(widths, dtype=torch.int64)
        self.weights_t = torch.cat(weights).float().contiguous()
        self.biases = torch.cat(biases).float().contiguous()
        head_t, head_bias = output
        self.head = F.pad(head_t.reshape(-1), (0, previous - head_t.shape[0])).float().contiguous()
        self.head_bias = float(head_bias.reshape(-1)[0])

    @classmethod
    def build(cls, folded) -> FusedNeurcomp | None:
        """None when the kernel cannot be built here or the network is not on the CPU.
        folded: a srnvtk.neurcomp_eval.FoldedNeurcomp."""
        if folded.layers[0][0].device.type != "cpu":
            return None
        if folded.residual and len({w.shape[1] for w, _ in folded.layers[0::2]}) != 1:
            raise ValueError("a residual Neurcomp's stream layers must share one width")
        library = load_kernel("neurcomp_kernel.c")
        if library is None:
            return None
        function = library.srn_neurcomp_decode
        function.argtypes = _ARGTYPES
        function.restype = ctypes.c_int
        return cls(function, folded.layers, folded.output, folded.blocks, folded.residual)

    def evaluate(self, xs: torch.Tensor, ys: torch.Tensor, zs: torch.Tensor) -> torch.Tensor:
        """(len(zs), len(ys), len(xs)) float32 values on the lattice of these normalised coordinates, the
        pieces shared between torch's number of threads."""
        xs, ys, zs = (c.to(torch.float32).contiguous() for c in (xs, ys, zs))

        def fill(piece: Piece, out: torch.Tensor) -> None:
            z0, z1, y0, y1 = piece
            self.run(xs, ys[y0:y1], zs[z0:z1], out)

        return fill_lattice((len(zs), len(ys), len(xs)), fill)

    def run(self, xs: torch.Tensor, ys: torch.Tensor, zs: torch.Tensor, out: torch.Tensor) -> None:
        """Fill out (len(zs), len(ys), len(xs)), contiguous float32, with the network's values on the lattice
        of these normalised float32 coordinates. The GIL is released (ctypes) while the kernel runs."""
        coords = (xs, ys, zs)
        if not all(c.dtype == torch.float32 and c.dim() == 1 and c.is_contiguous() and c.device.type == "cpu"
                   for c in coords):
            raise ValueError("neurcomp kernel: coordinates must be contiguous 1D float32 CPU tensors")
        well_placed = out.dtype == torch.float32 and out.is_contiguous() and out.device.type == "cpu"
        if out.shape != (len(zs), len(ys), len(xs)) or not well_placed:
            raise ValueError("neurcomp kernel: output of the wrong shape or layout")
        status = self.function(
            xs.data_ptr(), len(xs), ys.data_ptr(), len(ys), zs.data_ptr(), len(zs),
            self.blocks, int(self.residual), self.widths.data_ptr(),
            self.weights_t.data_ptr(), self.biases.data_ptr(), self.head.data_ptr(), self.head_bias,
            out.data_ptr(),
        )
        if status != 0:
            raise MemoryError("neurcomp kernel: could not allocate its scratch memory")
