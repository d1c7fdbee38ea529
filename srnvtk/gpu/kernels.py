"""Triton kernels that decode a whole lattice block per program: lookup, every layer and the output cast fused.

Imported only through srnvtk.gpu (which imports triton lazily): whether a kernel is compiled for a GPU or run
by Triton's interpreter on the CPU (TRITON_INTERPRET=1) is fixed when this module is first imported.

Each program of a launch is persistent: it loops over tiles of BLOCK voxels, 2^col_bits of each of several output
rows (rows are the flattened (z, y) pairs of the lattice, so a short x axis still fills a tile), and every tile
runs the same
instruction sequence whatever its position, so a voxel's value does not depend on the stride, extent or piece it
is decoded in. Per tile:

- fV-SRN: the latent grid (channels last, padded to CP channels) is read at the 8 corners of each voxel's cell
  and interpolated in z, then y, then x (the axis weights are the CPU path's, srnvtk.lattice.axis_weights); the
  first layer is one (BLOCK, CP) x (CP, WP) product plus three per-axis tables (position, Fourier features and
  bias, made once per decode); then Snake, and every hidden Linear + Snake as a (BLOCK, WP) x (WP, WP) product;
  the head is a row sum.
- Neurcomp: the positions come from the lattice axes, the first sine layer is three multiply-adds per unit,
  then each block's two sine layers are products of the same shape (the inference form of
  srnvtk.neurcomp_eval: omega_0, the aspect and the blocks' 0.5 factors are in the weights).

HALF: the products take fp16 operands with fp32 accumulation (tensor cores); everything else is fp32.
Without HALF they are fp32 products in IEEE precision (no tf32).
SIN chooses how sines are computed: 0 Triton's sin (libdevice on a GPU), 1 the polynomial of the CPU kernels
(srnvtk/native/simd.h: reduction by pi in three parts, degree-11 odd polynomial), 2 the GPU's approximate
sin/cos instructions (GPU only: Triton's interpreter has no inline assembly), meant for fp16 products: each is
one special-function instruction where the others take a dozen arithmetic ones.
The result is denormalised (value * scale + offset) and, for integer outputs (ROUND), rounded and clipped
before it is stored in the output's own dtype.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _reduced_sine(x):
    """sin(x) by reduction by pi and the degree-11 polynomial of simd.h; also k, the multiple of pi removed."""
    k = tl.floor(x * 0.3183098861837907 + 0.5)
    r = x - k * 3.140625
    r = r - k * 9.67502593994140625e-4
    r = r - k * 1.509957990978376432e-7
    r2 = r * r
    p = r2 * -2.5052108385441720e-8 + 2.7557319223985893e-6
    p = p * r2 - 1.9841269841269841e-4
    p = p * r2 + 8.3333333333333333e-3
    p = p * r2 - 1.6666666666666667e-1
    return r + r * r2 * p, k


@triton.jit
def _turns(x):
    """x minus the nearest multiple of 2 pi (two-part constant): an argument the approximate sine keeps accurate
    (a SIREN's activations reach tens of radians)."""
    k = tl.floor(x * 0.15915494309189535 + 0.5)
    return (x - k * 6.28125) - k * 1.9353071795864769e-3


@triton.jit
def _snake(x, SIN: tl.constexpr):
    """x + sin(x)^2 (fV-SRN's Snake)."""
    if SIN == 1:
        s, _k = _reduced_sine(x)
        s2 = tl.minimum(s * s, 1.0)
    elif SIN == 2:
        # sin^2 x = (1 - cos 2x) / 2: one approximate cosine per activation. No reduction first (4 operations of
        # the ~8 per activation): the instruction's error grows with |x| (~|x| 2^-22), far inside fp16's 1e-3 for
        # the few units a trained fV-SRN's activations reach (the precision='auto' probe checks)
        c = tl.inline_asm_elementwise("cos.approx.f32 $0, $1;", "=r,r", [2.0 * x], dtype=tl.float32, is_pure=True,
                                      pack=1)
        s2 = 0.5 - 0.5 * c
    else:
        s = tl.sin(x)
        s2 = s * s
    return x + s2


@triton.jit
def _sine(x, SIN: tl.constexpr):
    """sin(x) (Neurcomp's activation)."""
    if SIN == 1:
        s, k = _reduced_sine(x)
        odd = (k.to(tl.int32) & 1) == 1
        s = tl.minimum(tl.maximum(tl.where(odd, -s, s), -1.0), 1.0)
    elif SIN == 2:
        s = tl.inline_asm_elementwise("sin.approx.f32 $0, $1;", "=r,r", [_turns(x)], dtype=tl.float32,
                                      is_pure=True, pack=1)
    else:
        s = tl.sin(x)
    return s


@triton.jit
def _store(out_ptr, offsets, mask, value, scale, offset, low, high, ROUND: tl.constexpr):
    value = value * scale + offset
    if ROUND:  # integer outputs: nearest, then clipped to the type's range
        value = tl.minimum(tl.maximum(tl.floor(value + 0.5), low), high)
    tl.store(out_ptr + offsets, value.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _tile(tile, n_tiles_x, nx, nrows, col_bits, BLOCK: tl.constexpr):
    """The voxels of one tile of 2^col_bits columns (a run time value: one compiled kernel serves every lattice):
    x index, row index (both clamped into the lattice) and which are real."""
    lane = tl.arange(0, BLOCK)
    tile_row = tile // n_tiles_x
    x = (tile - tile_row * n_tiles_x) * (1 << col_bits) + (lane & ((1 << col_bits) - 1))
    row = tile_row * (BLOCK >> col_bits) + (lane >> col_bits)
    valid = (x < nx) & (row < nrows)
    return tl.minimum(x, nx - 1), tl.minimum(row, nrows - 1), valid


@triton.jit
def fvsrn_lattice_kernel(
    out_ptr, grid_ptr, grid_weight_ptr, weights_ptr, biases_ptr, head_ptr, head_bias,
    x_lo_ptr, x_hi_ptr, x_t_ptr, y_lo_ptr, y_hi_ptr, y_t_ptr, z_lo_ptr, z_hi_ptr, z_t_ptr,
    table_x_ptr, table_y_ptr, table_z_ptr,
    nx, ny, nrows, stride_z, stride_y, col_bits, n_tiles_x, n_tiles,
    scale, offset, low, high,
    CP: tl.constexpr, WP: tl.constexpr, HIDDEN: tl.constexpr, BLOCK: tl.constexpr, HALF: tl.constexpr,
    SIN: tl.constexpr, ROUND: tl.constexpr,
):
    """out[z, y, x] for the lattice of the axis weights; grid is (depth, height, width, CP) channels last,
    grid_weight (CP, WP), weights (HIDDEN, WP, WP) as (in, out), biases (HIDDEN, WP), head (WP), tables (n, WP)
    (table_x holds the first layer's bias)."""
    channel = tl.arange(0, CP)
    unit = tl.arange(0, WP)
    square = unit[:, None] * WP + unit[None, :]
    grid_weight = tl.load(grid_weight_ptr + channel[:, None] * WP + unit[None, :])
    head = tl.load(head_ptr + unit)
    for tile in range(tl.program_id(0), n_tiles, tl.num_programs(0)):
        x, row, valid = _tile(tile, n_tiles_x, nx, nrows, col_bits, BLOCK)
        z = row // ny
        y = row - z * ny
        x0, x1, tx = tl.load(x_lo_ptr + x), tl.load(x_hi_ptr + x), tl.load(x_t_ptr + x)
        y0, y1, ty = tl.load(y_lo_ptr + y), tl.load(y_hi_ptr + y), tl.load(y_t_ptr + y)
        z0, z1, tz = tl.load(z_lo_ptr + z), tl.load(z_hi_ptr + z), tl.load(z_t_ptr + z)
        # the cell's 8 corners, interpolated in z, then y, then x
        r00, r01 = z0 * stride_z + y0 * stride_y, z0 * stride_z + y1 * stride_y
        r10, r11 = z1 * stride_z + y0 * stride_y, z1 * stride_z + y1 * stride_y
        c0, c1 = (x0 * CP)[:, None] + channel[None, :], (x1 * CP)[:, None] + channel[None, :]
        wz, wy, wx = tz[:, None], ty[:, None], tx[:, None]
        a = tl.load(grid_ptr + r00[:, None] + c0).to(tl.float32)
        b = tl.load(grid_ptr + r10[:, None] + c0).to(tl.float32)
        lo_lo = a + wz * (b - a)
        a = tl.load(grid_ptr + r01[:, None] + c0).to(tl.float32)
        b = tl.load(grid_ptr + r11[:, None] + c0).to(tl.float32)
        left = lo_lo + wy * ((a + wz * (b - a)) - lo_lo)
        a = tl.load(grid_ptr + r00[:, None] + c1).to(tl.float32)
        b = tl.load(grid_ptr + r10[:, None] + c1).to(tl.float32)
        lo_hi = a + wz * (b - a)
        a = tl.load(grid_ptr + r01[:, None] + c1).to(tl.float32)
        b = tl.load(grid_ptr + r11[:, None] + c1).to(tl.float32)
        right = lo_hi + wy * ((a + wz * (b - a)) - lo_hi)
        features = left + wx * (right - left)
        if HALF:
            hidden = tl.dot(features.to(tl.float16), grid_weight)
        else:
            hidden = tl.dot(features, grid_weight, input_precision="ieee")
        hidden += tl.load(table_x_ptr + x[:, None] * WP + unit[None, :])
        hidden += tl.load(table_y_ptr + y[:, None] * WP + unit[None, :])
        hidden += tl.load(table_z_ptr + z[:, None] * WP + unit[None, :])
        hidden = _snake(hidden, SIN)
        for layer in tl.static_range(HIDDEN):
            weight = tl.load(weights_ptr + layer * WP * WP + square)
            bias = tl.load(biases_ptr + layer * WP + unit)
            if HALF:
                hidden = tl.dot(hidden.to(tl.float16), weight)
            else:
                hidden = tl.dot(hidden, weight, input_precision="ieee")
            hidden = _snake(hidden + bias[None, :], SIN)
        value = tl.sum(hidden * head[None, :], axis=1) + head_bias
        _store(out_ptr, row.to(tl.int64) * nx + x, valid, value, scale, offset, low, high, ROUND)


@triton.jit
def _sine_layer(source, weights_ptr, biases_ptr, layer, square, unit, WP: tl.constexpr, HALF: tl.constexpr,
                SIN: tl.constexpr):
    """sin(source @ weights[layer] + biases[layer]): one of the blocks' sine layers."""
    weight = tl.load(weights_ptr + layer * WP * WP + square)
    bias = tl.load(biases_ptr + layer * WP + unit)
    if HALF:
        product = tl.dot(source.to(tl.float16), weight)
    else:
        product = tl.dot(source, weight, input_precision="ieee")
    return _sine(product + bias[None, :], SIN)


@triton.jit
def neurcomp_lattice_kernel(
    out_ptr, xs_ptr, ys_ptr, zs_ptr, first_ptr, weights_ptr, biases_ptr, head_ptr, head_bias,
    nx, ny, nrows, col_bits, n_tiles_x, n_tiles,
    scale, offset, low, high,
    WP: tl.constexpr, BLOCKS: tl.constexpr, RESIDUAL: tl.constexpr, BLOCK: tl.constexpr, HALF: tl.constexpr,
    SIN: tl.constexpr, ROUND: tl.constexpr,
):
    """out[z, y, x] of a folded Neurcomp on the lattice xs x ys x zs; first is (4, WP): the first layer's three
    weight rows and its bias; the blocks' layers: weights (2 BLOCKS, WP, WP) as (in, out), biases (2 BLOCKS, WP);
    head (WP)."""
    unit = tl.arange(0, WP)
    square = unit[:, None] * WP + unit[None, :]
    w_x, w_y = tl.load(first_ptr + unit), tl.load(first_ptr + WP + unit)
    w_z, b_0 = tl.load(first_ptr + 2 * WP + unit), tl.load(first_ptr + 3 * WP + unit)
    head = tl.load(head_ptr + unit)
    for tile in range(tl.program_id(0), n_tiles, tl.num_programs(0)):
        x, row, valid = _tile(tile, n_tiles_x, nx, nrows, col_bits, BLOCK)
        z = row // ny
        y = row - z * ny
        px, py, pz = tl.load(xs_ptr + x)[:, None], tl.load(ys_ptr + y)[:, None], tl.load(zs_ptr + z)[:, None]
        stream = _sine(((b_0[None, :] + px * w_x[None, :]) + py * w_y[None, :]) + pz * w_z[None, :], SIN)
        for block in range(BLOCKS):  # a loop, not unrolled: 7 unrolled blocks take half a minute to compile
            inner = _sine_layer(stream, weights_ptr, biases_ptr, 2 * block, square, unit, WP, HALF, SIN)
            outer = _sine_layer(inner, weights_ptr, biases_ptr, 2 * block + 1, square, unit, WP, HALF, SIN)
            if RESIDUAL:
                stream = stream + outer
            else:
                stream = outer
        value = tl.sum(stream * head[None, :], axis=1) + head_bias
        _store(out_ptr, row.to(tl.int64) * nx + x, valid, value, scale, offset, low, high, ROUND)


# triton.jit made interpreter functions instead of GPU kernels (TRITON_INTERPRET=1 when this module was imported)
INTERPRETED = not isinstance(fvsrn_lattice_kernel, triton.runtime.JITFunction)

__all__ = ["INTERPRETED", "fvsrn_lattice_kernel", "neurcomp_lattice_kernel"]
