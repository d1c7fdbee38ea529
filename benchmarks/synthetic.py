"""A synthetic turbulence-like scalar field: Gaussian random Fourier modes with a -5/3 energy spectrum.

Every Fourier mode k of a periodic n^3 box gets a complex Gaussian amplitude with |a_k|^2 ~ E(|k|) / |k|^2
(E(k) is the shell-summed spectrum; a shell holds ~4 pi k^2 modes), E(k) = k^slope exp(-(k / k_d)^2): an
inertial range with the Kolmogorov / Obukhov-Corrsin slope -5/3 and a Gaussian dissipation cut-off (k_d half
the Nyquist wavenumber by default), so the field is smooth at the grid scale as a resolved simulation is.
The inverse FFT gives a real field, returned with zero mean and unit standard deviation as float32.
Deterministic: the same shape, seed and spectrum always give the same array (numpy's PCG64 and pocketfft).

    .venv/bin/python -m benchmarks.synthetic out.vti --size 256 --seed 0
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np

from srnvtk.datasets import default_geometry
from srnvtk.volume import Volume

SLOPE = -5.0 / 3.0
ARRAY_NAME = "scalar"


def wavenumbers(n: int, half: bool = False) -> np.ndarray:
    """Integer wavenumbers of an n-point periodic axis (the non-negative half for a real FFT's last axis)."""
    return np.arange(n // 2 + 1, dtype=np.float64) if half else np.fft.fftfreq(n, 1.0 / n)


def amplitude_spectrum(
    shape: tuple[int, int, int], slope: float = SLOPE, dissipation_fraction: float = 0.5
) -> np.ndarray:
    """|a_k| on the rfftn grid of a [z, y, x] field: sqrt(E(k) / k^2); 0 for the mean (k = 0).

    The dissipation wavenumber k_d is dissipation_fraction times the Nyquist wavenumber of the shortest axis.
    """
    nz, ny, nx = shape
    kz = wavenumbers(nz).reshape(-1, 1, 1)
    ky = wavenumbers(ny).reshape(1, -1, 1)
    kx = wavenumbers(nx, half=True).reshape(1, 1, -1)
    k = np.sqrt(kz**2 + ky**2 + kx**2)
    k_d = dissipation_fraction * min(shape) / 2.0
    safe_k = np.where(k > 0, k, 1.0)
    amplitude = safe_k ** ((slope - 2.0) / 2.0) * np.exp(-0.5 * (safe_k / k_d) ** 2)
    amplitude[k == 0] = 0.0
    return amplitude


def turbulence_values(
    shape: tuple[int, int, int] = (256, 256, 256),
    seed: int = 0,
    slope: float = SLOPE,
    dissipation_fraction: float = 0.5,
) -> np.ndarray:
    """The field as float32 values[z, y, x] (shape given as [z, y, x]), zero mean, unit standard deviation."""
    if len(shape) != 3 or min(shape) < 2:
        raise ValueError(f"shape must be three sizes >= 2, got {shape}")
    rng = np.random.default_rng(seed)
    amplitude = amplitude_spectrum(tuple(shape), slope, dissipation_fraction)
    modes = rng.standard_normal(amplitude.shape) + 1j * rng.standard_normal(amplitude.shape)
    modes *= amplitude
    field = np.fft.irfftn(modes, s=tuple(shape), axes=(0, 1, 2))
    field -= field.mean()
    field /= field.std()
    return field.astype(np.float32)


def turbulence_volume(size: int = 256, seed: int = 0) -> Volume:
    """A size^3 field on the project's default geometry (the unit cube, equal spacing)."""
    values = turbulence_values((size, size, size), seed)
    return Volume(values, default_geometry((size, size, size)), ARRAY_NAME)


def write_volume_command(make_volume: Callable[[int, int], Volume], description: str | None) -> None:
    """The command line of a generated benchmark volume: OUTPUT.vti [--size N] [--seed S]."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output", help="a .vti file")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from srnvtk.vtkio import image_from_arrays, write_vti

    volume = make_volume(args.size, args.seed)
    write_vti(image_from_arrays(volume.geometry, {volume.name: volume.values}, active=volume.name), args.output)


def main() -> None:
    write_volume_command(turbulence_volume, __doc__)


if __name__ == "__main__":
    main()
