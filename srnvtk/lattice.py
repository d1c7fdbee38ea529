"""Fast evaluation of an fV-SRN on a uniform lattice (the common case of decoding a grid).

Three identities make a lattice much cheaper than scattered points:
- the first MLP layer is linear, and so is trilinear interpolation, so the grid's contribution to it can
  be projected once per file (W_grid @ grid: C channels -> width) and interpolated afterwards;
- the position and Fourier inputs of a lattice point depend on one axis each, so their contribution to
  the first layer is a sum of three small per-axis tables;
- trilinear interpolation on a lattice separates into three 1D linear interpolations (z, then y, then x),
  each a gather and a lerp over whole planes instead of eight gathers per point.
What is left per voxel is the dense MLP after the first layer. On the CPU a fused C kernel
(srnvtk/native/lattice_kernel.c, built on first use) projects only the grid rows each output row reads, then
does the x interpolation and the whole MLP per 16 voxels in registers; without a C compiler, torch projects the
whole grid once per decode and does the rest in cache-sized batches.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from .models.fvsrn import FVSRN
from .models.layers import Snake
from .native.lattice import AxisWeights, FusedLattice
from .parallel import Piece, fill_lattice, run_pieces

# On the CPU every MLP block has exactly this many rows (the last one padded): small enough for the
# activations to stay in cache, and always the same shape so the matrix library takes the same code path
# and a voxel gets bit-identical values in whichever block it is decoded (a stride or piece equals the
# matching part of the full grid exactly).
CPU_BLOCK_POINTS = 1 << 13


class LatticeFVSRN:
    """Precomputed pieces of one trained FVSRN for lattice decoding (inference only)."""

    def __init__(self, model: FVSRN, dtype: torch.dtype = torch.float32) -> None:
        if model.masks():
            raise TypeError("a pruning mask is still attached (not baked): evaluate point by point")
        layers = list(model.mlp)
        first = layers[0]
        plain = all(isinstance(m, (nn.Linear, Snake)) for m in layers)
        if not (plain and isinstance(first, nn.Linear) and len(layers) > 2 and isinstance(layers[1], Snake)):
            raise TypeError("not a plain Linear, Snake, ... MLP")
        self.dtype = dtype
        grid = model.grid.detach()  # a wavelet model's grid: its coefficients' inverse DWT, computed once
        channels = grid.shape[0]
        weight = first.weight.detach()
        n_fourier = model.fourier.out_features
        self.w_pos = weight[:, :3]
        self.w_fourier = weight[:, 3:3 + n_fourier]
        w_grid = weight[:, 3 + n_fourier:]
        if w_grid.shape[1] != channels:
            raise TypeError("first layer does not match the grid's channels")
        self.grid, self.w_grid = grid, w_grid
        self._projected: torch.Tensor | None = None
        self.bias = first.bias.detach()
        self.fourier = model.fourier
        # After the first Linear and its Snake; a copy, as .to(dtype) would otherwise convert the model's own layers
        self.rest = copy.deepcopy(nn.Sequential(*layers[2:])).to(dtype)
        self.device = grid.device
        self.fused = None  # the C kernel, where it can be built and the lattice is evaluated in fp32 on the CPU
        if self.device.type == "cpu" and dtype == torch.float32:
            self.fused = FusedLattice.build(grid, w_grid, list(self.rest))

    @property
    def projected(self) -> torch.Tensor:
        """(D, H, W, width): the grid multiplied into the first layer, channels last for gathers (the torch
        path's; made on first use, as the fused kernel projects the rows it needs itself)."""
        if self._projected is None:
            self._projected = torch.einsum("oc,cdhw->dhwo", self.w_grid, self.grid).to(self.dtype).contiguous()
        return self._projected

    def axis_table(self, axis: int, coords: torch.Tensor) -> torch.Tensor:
        """(n, width): position and Fourier contribution of one axis' coordinates to the first layer."""
        table = coords[:, None] * self.w_pos[:, axis]
        k = self.fourier.octaves
        if k:
            angles = coords[:, None] * self.fourier.aspect[axis] * self.fourier.frequencies  # (n, K)
            # FourierFeatures orders its outputs as [sin(x, k..), sin(y, ..), sin(z, ..), cos(x ..) ...]
            w_sin = self.w_fourier[:, axis * k:(axis + 1) * k]
            w_cos = self.w_fourier[:, 3 * k + axis * k:3 * k + (axis + 1) * k]
            table = table + torch.sin(angles) @ w_sin.t() + torch.cos(angles) @ w_cos.t()
        return table

    def evaluate(self, xs: torch.Tensor, ys: torch.Tensor, zs: torch.Tensor, batch_points: int) -> torch.Tensor:
        """Normalised values on the lattice zs x ys x xs (normalised coordinates): float32 (nz, ny, nx).

        Works on blocks of at most batch_points points (several z planes, or a few rows of one),
        so memory stays bounded: small blocks keep a CPU's activations in cache, large ones feed a GPU.
        """
        tables = [self.axis_table(a, c).to(self.dtype) for a, c in enumerate((xs, ys, zs))]
        tables[0] = tables[0] + self.bias.to(self.dtype)
        if self.fused is not None:
            return self._evaluate_fused(xs, ys, zs, tables)
        pad_to = 1
        if self.device.type == "cpu":
            batch_points = pad_to = CPU_BLOCK_POINTS
        nz, ny, nx = len(zs), len(ys), len(xs)
        out = torch.empty((nz, ny, nx), dtype=torch.float32, device=self.device)
        planes = max(1, min(nz, batch_points // max(nx * ny, 1)))
        rows = ny if planes > 1 else max(1, min(ny, batch_points // max(nx, 1)))

        def fill(z0: int) -> None:
            with torch.inference_mode():  # thread-local: worker threads need it too
                z1 = min(nz, z0 + planes)
                slab = interpolate_axis(self.projected, zs[z0:z1], 0)  # (planes, H, W, width)
                for y0 in range(0, ny, rows):
                    y1 = min(ny, y0 + rows)
                    hidden = interpolate_axis(interpolate_axis(slab, ys[y0:y1], 1), xs, 2)  # (planes, rows, nx, w)
                    hidden += tables[0][None, None, :, :]
                    hidden += tables[1][None, y0:y1, None, :]
                    hidden += tables[2][z0:z1, None, None, :]
                    block = self._mlp_tail(hidden.reshape(-1, hidden.shape[-1]), pad_to)
                    out[z0:z1, y0:y1] = block.reshape(z1 - z0, y1 - y0, nx)

        run_pieces(fill, range(0, nz, planes), parallel=self.device.type == "cpu")
        return out

    def _evaluate_fused(self, xs: torch.Tensor, ys: torch.Tensor, zs: torch.Tensor,
                        tables: list[torch.Tensor]) -> torch.Tensor:
        fused = self.fused
        depth, height, width = self.grid.shape[1:]
        z, y, x = axis_weights(depth, zs), axis_weights(height, ys), axis_weights(width, xs)
        table_x, table_y, table_z = (fused.pad_table(t) for t in tables)

        def fill(piece: Piece, out: torch.Tensor) -> None:
            z0, z1, y0, y1 = piece
            fused.run(_part(z, z0, z1), _part(y, y0, y1), x, [table_x, table_y[y0:y1], table_z[z0:z1]], out)

        return fill_lattice((len(zs), len(ys), len(xs)), fill)

    def _mlp_tail(self, hidden: torch.Tensor, pad_to: int) -> torch.Tensor:
        """Snake of the first layer, then the remaining Linear/Snake layers; activations updated in place."""
        rows = hidden.shape[0]
        padded = -(-rows // pad_to) * pad_to
        if padded != rows:
            hidden = torch.cat([hidden, hidden.new_zeros(padded - rows, hidden.shape[1])])
        snake_(hidden)
        for layer in self.rest:
            if isinstance(layer, nn.Linear):
                hidden = torch.addmm(layer.bias, hidden, layer.weight.t())
            else:
                snake_(hidden)
        return hidden[:rows].reshape(-1).to(torch.float32)


def _part(weights: AxisWeights, start: int, stop: int) -> AxisWeights:
    return tuple(w[start:stop] for w in weights)


def snake_(x: torch.Tensor) -> torch.Tensor:
    """x + sin(x)^2 in place, in two passes over memory."""
    s = torch.sin(x)
    return x.addcmul_(s, s)


def axis_weights(n: int, coords: torch.Tensor) -> AxisWeights:
    """Linear interpolation weights on n samples at normalised coords in [-1, 1] (align_corners, border clamp):
    the lower and upper sample of each coordinate and the upper one's weight."""
    u = ((coords.to(torch.float32) + 1.0) * 0.5 * (n - 1)).clamp_(0, n - 1)
    lo = u.floor().clamp_(max=max(n - 2, 0)).to(torch.long)
    hi = (lo + 1).clamp_(max=n - 1)
    return lo, hi, u - lo


def interpolate_axis(values: torch.Tensor, coords: torch.Tensor, axis: int) -> torch.Tensor:
    """Linear interpolation of values along one axis at normalised coords in [-1, 1] (see axis_weights)."""
    lo, hi, t = axis_weights(values.shape[axis], coords)
    t = t.to(values.dtype)
    shape = [1] * values.dim()
    shape[axis] = -1
    t = t.reshape(shape)
    a = values.index_select(axis, lo)
    b = values.index_select(axis, hi)
    return a.lerp_(b, t) if a.dtype == t.dtype else a + (b - a) * t
