"""Differentiable 3D discrete wavelet transform of (channels, z, y, x) grids, with exactly one coefficient per value.

The wavelet variant of fV-SRN stores the latent grid as wavelet coefficients and runs `WaveletTransform3D.inverse`
in every training forward pass. The transform is separable: at each level every axis is multiplied by a small
matrix (the periodised filter bank of that axis length), so forward, inverse and their gradients are plain matmuls.

Boundary handling is PyWavelets' ``mode='periodization'``, which is non-expansive for even lengths: wherever every
transformed axis is even at every level, the coefficients equal ``pywt.wavedecn(x, wavelet, mode='periodization',
level=L, axes=(-3, -2, -1))`` laid out like ``pywt.coeffs_to_array`` (Mallat layout: approximation in the low
corner, details around it), and `inverse` equals ``pywt.waverecn``.

Odd lengths: PyWavelets would pad an odd axis to even length and return one coefficient too many. Here an axis of
odd length n = 2h + 1 transforms its first 2h samples periodically and carries the last sample along as one extra
approximation coefficient, scaled by the low-pass DC gain sum(dec_lo) (sqrt(2) for every PyWavelets wavelet).
Along that axis the level gives h + 1 = ceil(n/2) approximation coefficients (``[cA_0 .. cA_{h-1}, carry]``, the
same count PyWavelets gives) and h = floor(n/2) detail coefficients: n in total. The scaling keeps a constant signal
constant in the approximation band, so constant (and locally smooth) data still has zero (small) detail
coefficients at every level; the price is that for an orthogonal wavelet that one coefficient per odd axis and
level is sqrt(2) times its orthonormal value. The transform stays exactly invertible.

Levels are counted per axis: an axis that becomes too short stops being split while the longer axes go on, so a
thin grid such as 16 x 8 x 64 x 64 still gets several levels in y and x. At a level where some axis is not split,
that axis' letter in the subband key is always 'a' (there are then fewer than 7 detail subbands). With the same
level count on every axis this is exactly PyWavelets' multilevel decomposition.

``dmey`` is not offered: PyWavelets' 62-tap discrete Meyer filter is a truncated approximation that does not
reconstruct perfectly (errors of about 3e-3 after one level).
"""

from __future__ import annotations

import difflib
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pywt
import torch
from torch import nn

from .errors import SettingsError

# Discrete wavelets of PyWavelets that are left out, with the reason given to users.
_UNSUPPORTED = {
    "dmey": "its FIR approximation of the Meyer wavelet does not reconstruct perfectly (errors of about 3e-3)",
}

Levels = int | Sequence[int] | None


@functools.cache
def _supported() -> tuple[str, ...]:
    return tuple(name for name in pywt.wavelist(kind="discrete") if name not in _UNSUPPORTED)


def wavelet_names() -> list[str]:
    """Every PyWavelets discrete wavelet this module supports (haar, db1.., sym2.., coif1.., bior.., rbio..)."""
    return list(_supported())


def _names_summary() -> str:
    """The supported names by family: 'haar, db1..db38, sym2..sym20, ...'."""
    parts = []
    for family in pywt.families(short=True):
        names = [name for name in pywt.wavelist(family) if name in _supported()]
        if len(names) == 1:
            parts.append(names[0])
        elif names:
            parts.append(f"{names[0]}..{names[-1]}")
    return ", ".join(parts)


def check_wavelet(name: str) -> pywt.Wavelet:
    """The PyWavelets wavelet of that name; SettingsError naming the valid choices if it is not supported."""
    key = str(name).strip().lower()
    if key in _UNSUPPORTED:
        raise SettingsError(f"wavelet {name!r} is not supported: {_UNSUPPORTED[key]}")
    if key not in _supported():
        close = difflib.get_close_matches(key, _supported(), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise SettingsError(
            f"unknown wavelet {name!r}{hint}; valid names are PyWavelets' discrete wavelets: {_names_summary()} "
            f"({len(_supported())} names, listed by srnvtk.wavelet.wavelet_names())"
        )
    return pywt.Wavelet(key)


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check_shape(shape_zyx: Sequence[int]) -> tuple[int, int, int]:
    shape = tuple(shape_zyx)
    if len(shape) != 3 or not all(_is_int(n) for n in shape):
        raise SettingsError(f"grid shape must be three integers (z, y, x), got {shape_zyx!r}")
    if min(shape) < 1:
        raise SettingsError(f"grid shape must be positive, got {shape}")
    return (int(shape[0]), int(shape[1]), int(shape[2]))


def _possible_levels(n: int) -> int:
    """How many times an axis of n samples can be split: each split needs >= 2 samples and keeps ceil(n/2)."""
    count = 0
    while n >= 2:
        n = (n + 1) // 2
        count += 1
    return count


def max_levels(shape_zyx: Sequence[int], wavelet: str) -> tuple[int, int, int]:
    """The automatic per-axis level counts (z, y, x): ``pywt.dwt_max_level(n, filter_length)`` for each axis.

    That is the largest L with n / 2**L >= filter_length - 1, so the coarsest approximation still spans about one
    filter. Longer axes get more levels than short ones; an axis shorter than the filter gets none.
    """
    shape = _check_shape(shape_zyx)
    length = check_wavelet(wavelet).dec_len
    return tuple(pywt.dwt_max_level(n, length) for n in shape)  # type: ignore[return-value]


def resolve_levels(shape_zyx: Sequence[int], wavelet: str, levels: Levels = None) -> tuple[int, int, int]:
    """Per-axis level counts for a `levels` setting: None (automatic), one int for all axes, or (z, y, x) ints.

    An explicit count may exceed the automatic one (periodisation works with filters longer than the signal), but
    every split needs at least 2 samples along its axis; asking for more gives a SettingsError.
    """
    shape = _check_shape(shape_zyx)
    if levels is None:
        return max_levels(shape, wavelet)
    check_wavelet(wavelet)
    if _is_int(levels):
        per_axis = (int(levels),) * 3  # type: ignore[arg-type]
    else:
        values = tuple(levels) if isinstance(levels, Sequence) else ()
        if len(values) != 3 or not all(_is_int(v) for v in values):
            raise SettingsError(f"wavelet levels must be None, an int or three ints (z, y, x), got {levels!r}")
        per_axis = tuple(int(v) for v in values)
    if min(per_axis) < 0:
        raise SettingsError(f"wavelet levels must be >= 0, got {levels!r}")
    possible = tuple(_possible_levels(n) for n in shape)
    if any(want > most for want, most in zip(per_axis, possible, strict=True)):
        raise SettingsError(
            f"wavelet levels={levels!r} is too many for a grid of shape (z, y, x) = {shape}: each level halves an "
            f"axis and needs at least 2 samples along it, so the axes allow at most {possible} levels "
            f"(automatic choice for {wavelet!r}: {max_levels(shape, wavelet)})"
        )
    return per_axis  # type: ignore[return-value]


@functools.cache
def _periodic_matrices(n: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Analysis and synthesis matrices of one periodised level on an even length n, rows/columns [cA; cD].

    cA[k] = sum_j dec_lo[j] x[(2k + F/2 - j) mod n] (PyWavelets' periodization convention), likewise cD with
    dec_hi; synthesis adds rec_lo[j] cA[k] + rec_hi[j] cD[k] into x[(2k + j - F/2 + 1) mod n]. Filters longer
    than n wrap around more than once, exactly as in PyWavelets.
    """
    wavelet = pywt.Wavelet(name)
    dec_lo, dec_hi = np.asarray(wavelet.dec_lo), np.asarray(wavelet.dec_hi)
    rec_lo, rec_hi = np.asarray(wavelet.rec_lo), np.asarray(wavelet.rec_hi)
    taps = len(dec_lo)  # even for every PyWavelets wavelet (biorthogonal filters are zero-padded to equal length)
    half = n // 2
    k = np.arange(half)[:, None]
    j = np.arange(taps)[None, :]
    rows = np.broadcast_to(k, (half, taps))
    analysis = np.zeros((n, n))
    columns = (2 * k + taps // 2 - j) % n
    np.add.at(analysis, (rows, columns), np.broadcast_to(dec_lo, (half, taps)))
    np.add.at(analysis, (rows + half, columns), np.broadcast_to(dec_hi, (half, taps)))
    synthesis = np.zeros((n, n))
    targets = (2 * k + j - taps // 2 + 1) % n
    np.add.at(synthesis, (targets, rows), np.broadcast_to(rec_lo, (half, taps)))
    np.add.at(synthesis, (targets, rows + half), np.broadcast_to(rec_hi, (half, taps)))
    return analysis, synthesis


def level_matrices(n: int, wavelet: str) -> tuple[np.ndarray, np.ndarray]:
    """Float64 (analysis, synthesis) matrices of one level on an axis of n >= 2 samples; synthesis @ analysis = I.

    Rows of the analysis matrix (columns of the synthesis one) are ordered like the packed coefficients: the
    ceil(n/2) approximation coefficients, then the floor(n/2) details. For odd n the last approximation row is the
    carried last sample times sum(dec_lo) (see the module docstring).
    """
    name = check_wavelet(wavelet).name
    if n < 2:
        raise SettingsError(f"a wavelet level needs at least 2 samples along an axis, got {n}")
    if n % 2 == 0:
        analysis, synthesis = _periodic_matrices(n, name)
        return analysis.copy(), synthesis.copy()
    even = n - 1
    half = even // 2
    periodic_analysis, periodic_synthesis = _periodic_matrices(even, name)
    gain = float(np.sum(pywt.Wavelet(name).dec_lo))
    order = np.r_[np.arange(half), even, np.arange(half, even)]  # packed position -> [cA, cD, carry] position
    analysis = np.zeros((n, n))
    analysis[:even, :even] = periodic_analysis
    analysis[even, even] = gain
    synthesis = np.zeros((n, n))
    synthesis[:even, :even] = periodic_synthesis
    synthesis[even, even] = 1.0 / gain
    return analysis[order], synthesis[:, order]


@dataclass(frozen=True)
class Subband:
    """One subband of the packed coefficients: ``coeffs[subband.index]`` selects it (any leading channel dims).

    level: 1 is the finest (first) split, the highest level the coarsest; the approximation has the highest level.
    key: one letter per axis (z, y, x), 'a' for the low-pass half and 'd' for the high-pass half, as in
    ``pywt.wavedecn``; the approximation is 'aaa'.
    """

    level: int
    key: str
    slices: tuple[slice, slice, slice]

    @property
    def index(self) -> tuple:
        return (Ellipsis, *self.slices)

    @property
    def size(self) -> int:
        return math.prod(s.stop - s.start for s in self.slices)


def _axis_lengths(n: int, levels: int, total: int) -> list[int]:
    """Length of this axis' region entering each level 1..total (an axis past its own levels keeps its length)."""
    lengths = [n]
    for level in range(1, total):
        previous = lengths[-1]
        lengths.append((previous + 1) // 2 if level <= levels else previous)
    return lengths


def subbands(shape_zyx: Sequence[int], levels: Sequence[int]) -> list[Subband]:
    """The packed layout for per-axis level counts: approximation first, then details from coarsest to finest.

    The order matches ``pywt.wavedecn``'s list [cA_L, {details L}, ..., {details 1}], each level's details sorted
    by key. Together the subbands tile the grid exactly once.
    """
    shape = _check_shape(shape_zyx)
    per_axis = tuple(int(v) for v in levels)
    total = max(per_axis)
    lengths = [_axis_lengths(n, lv, total) for n, lv in zip(shape, per_axis, strict=True)]
    result: list[Subband] = []
    for level in range(total, 0, -1):
        active = [level <= lv for lv in per_axis]
        low = [(lengths[a][level - 1] + 1) // 2 if active[a] else lengths[a][level - 1] for a in range(3)]
        if level == total:
            result.append(Subband(level, "aaa", tuple(slice(0, low[a]) for a in range(3))))  # type: ignore[arg-type]
        details = []
        for bits in range(1, 8):
            key = "".join("d" if bits >> (2 - a) & 1 else "a" for a in range(3))
            if any(letter == "d" and not active[a] for a, letter in enumerate(key)):
                continue
            slices = tuple(
                slice(0, low[a]) if letter == "a" else slice(low[a], lengths[a][level - 1])
                for a, letter in enumerate(key)
            )
            details.append(Subband(level, key, slices))  # type: ignore[arg-type]
        result.extend(sorted(details, key=lambda band: band.key))
    if total == 0:
        result.append(Subband(0, "aaa", tuple(slice(0, n) for n in shape)))  # type: ignore[arg-type]
    return result


def level_groups(bands: Sequence[Subband]) -> list[list[Subband]]:
    """Subbands (as `subbands` orders them) grouped by level: the approximation alone, then each level's details,
    coarsest first. Magnitudes differ mostly between levels, far less between one level's orientations."""
    approximation, *details = bands
    levels = sorted({band.level for band in details}, reverse=True)
    return [[approximation]] + [[band for band in details if band.level == level] for level in levels]


def _along_axes(grid: torch.Tensor, matrices: Sequence[torch.Tensor | None]) -> torch.Tensor:
    """Multiply the last three axes of grid by the given matrices (None leaves that axis alone)."""
    along_z, along_y, along_x = (None if m is None else m.to(grid.dtype) for m in matrices)
    if along_z is not None:
        shape = grid.shape
        grid = torch.matmul(along_z, grid.reshape(-1, shape[-3], shape[-2] * shape[-1])).reshape(shape)
    if along_y is not None:
        grid = torch.matmul(along_y, grid)
    if along_x is not None:
        grid = torch.matmul(grid, along_x.transpose(0, 1))
    return grid


def _with_corner(full: torch.Tensor, corner: torch.Tensor) -> torch.Tensor:
    """full with its low corner replaced by corner (differentiable, full itself is left alone)."""
    out = full.clone()
    out[(..., *(slice(0, n) for n in corner.shape[-3:]))] = corner
    return out


class WaveletTransform3D(nn.Module):
    """Multilevel separable 3D DWT of grids shaped (..., z, y, x) into a packed tensor of the same shape.

    ``forward(grid)`` gives the coefficients (Mallat layout, see `subbands`), ``inverse(coeffs)`` the grid. Both
    accept any leading dims (channels), any float dtype and are differentiable. The per-level matrices are
    non-persistent buffers (rebuilt from shape, wavelet and levels, never stored in a state dict); they are kept in
    float64 and cast to the input's dtype on use.

    levels: None for `max_levels` (per axis), an int for every axis, or per-axis ints (z, y, x).
    """

    def __init__(self, shape_zyx: Sequence[int], wavelet: str = "db2", levels: Levels = None) -> None:
        super().__init__()
        self.shape = _check_shape(shape_zyx)
        self.wavelet = check_wavelet(wavelet).name
        self.levels = resolve_levels(self.shape, self.wavelet, levels)
        self.num_levels = max(self.levels)
        self._lengths = [_axis_lengths(n, lv, self.num_levels) for n, lv in zip(self.shape, self.levels, strict=True)]
        for n in sorted({self._lengths[a][i] for a in range(3) for i in range(self.levels[a])}):
            analysis, synthesis = level_matrices(n, self.wavelet)
            self.register_buffer(f"analysis_{n}", torch.from_numpy(analysis), persistent=False)
            self.register_buffer(f"synthesis_{n}", torch.from_numpy(synthesis), persistent=False)

    def extra_repr(self) -> str:
        return f"shape={self.shape}, wavelet={self.wavelet!r}, levels={self.levels}"

    def subbands(self) -> list[Subband]:
        """Where each level/subband lies in the packed coefficients (see the module-level `subbands`)."""
        return subbands(self.shape, self.levels)

    def _level(self, level: int, kind: str) -> tuple[tuple[int, int, int], list[torch.Tensor | None]]:
        """Region size entering a level (1-based) and its per-axis matrices (None for axes not split there)."""
        region = tuple(self._lengths[a][level - 1] for a in range(3))
        matrices = [getattr(self, f"{kind}_{region[a]}") if level <= self.levels[a] else None for a in range(3)]
        return region, matrices  # type: ignore[return-value]

    def _check(self, tensor: torch.Tensor) -> None:
        if tensor.dim() < 3 or tuple(tensor.shape[-3:]) != self.shape:
            expected = ", ".join(map(str, self.shape))
            raise ValueError(f"expected a tensor shaped (..., {expected}), got {tuple(tensor.shape)}")

    def forward(self, grid: torch.Tensor) -> torch.Tensor:
        """Packed wavelet coefficients of grid, same shape as grid."""
        self._check(grid)
        coeffs = grid
        for level in range(1, self.num_levels + 1):
            region, matrices = self._level(level, "analysis")
            if level == 1:
                coeffs = _along_axes(coeffs, matrices)
            else:
                corner = coeffs[(..., *(slice(0, n) for n in region))]
                coeffs = _with_corner(coeffs, _along_axes(corner, matrices))
        return coeffs

    def inverse(self, coeffs: torch.Tensor) -> torch.Tensor:
        """The grid whose packed coefficients these are (exact inverse of `forward`)."""
        self._check(coeffs)
        grid = coeffs
        for level in range(self.num_levels, 0, -1):
            region, matrices = self._level(level, "synthesis")
            if level == 1:
                grid = _along_axes(grid, matrices)
            else:
                corner = grid[(..., *(slice(0, n) for n in region))]
                grid = _with_corner(grid, _along_axes(corner, matrices))
        return grid
