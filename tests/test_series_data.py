"""The generated time series (srnvtk.series_data): deterministic, float32, physical, and steps that change
smoothly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from srnvtk.datasets import default_geometry
from srnvtk.errors import SettingsError
from srnvtk.series_data import (
    DENSITY_HEAVY,
    DENSITY_LIGHT,
    SERIES_ARRAYS,
    U_RMS,
    _sample,
    generate_series,
    series_times,
)

SHAPE = (16, 14, 12)  # x, y, z: no two axes alike
STEPS = 4


@pytest.fixture(scope="module")
def steps() -> list[tuple[float, dict[str, np.ndarray]]]:
    return list(generate_series(SHAPE, STEPS, seed=0))


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel().astype(np.float64), b.ravel().astype(np.float64))[0, 1])


def test_arrays_are_float32_zyx_and_times_increase(steps) -> None:
    assert [t for t, _ in steps] == list(series_times(STEPS))
    assert all(b > a for a, b in zip(series_times(STEPS), series_times(STEPS)[1:], strict=False))
    for _, arrays in steps:
        assert tuple(arrays) == SERIES_ARRAYS
        assert arrays["density"].shape == arrays["temperature"].shape == (12, 14, 16)
        assert arrays["velocity"].shape == (12, 14, 16, 3)
        assert all(a.dtype == np.float32 and a.flags.c_contiguous for a in arrays.values())
        assert all(np.isfinite(a).all() for a in arrays.values())


def test_deterministic_and_seeded(steps) -> None:
    again = list(generate_series(SHAPE, STEPS, seed=0))
    for (t, a), (u, b) in zip(steps, again, strict=True):
        assert t == u
        assert all(np.array_equal(a[name], b[name]) for name in SERIES_ARRAYS)
    other = next(iter(generate_series(SHAPE, 1, seed=1)))[1]
    assert not np.array_equal(other["density"], steps[0][1]["density"])
    assert not np.array_equal(other["velocity"], steps[0][1]["velocity"])


def test_a_shorter_series_is_the_start_of_a_longer_one(steps) -> None:
    short = list(generate_series(SHAPE, 2, seed=0))
    for (_, a), (_, b) in zip(short, steps[:2], strict=True):
        assert all(np.array_equal(a[name], b[name]) for name in SERIES_ARRAYS)


def test_physical_ranges(steps) -> None:
    density = np.stack([a["density"] for _, a in steps])
    assert density.min() >= DENSITY_LIGHT - 1e-4 and density.max() <= DENSITY_HEAVY + 1e-4
    # Both fluids are there, heavy below: the bottom slab is denser than the top one in every step.
    for _, arrays in steps:
        d = arrays["density"]
        assert d[:2].mean() > d[-2:].mean() + 0.5 * (DENSITY_HEAVY - DENSITY_LIGHT)
        # Not a function of height alone: stirring folds the interface, so planes of constant z vary.
        assert d.var(axis=(1, 2)).mean() > 0.02 * d.var()
        t = arrays["temperature"]
        assert 250.0 < t.min() < t.max() < 400.0 and t.std() > 1.0


def test_steps_differ_but_are_correlated(steps) -> None:
    for name in SERIES_ARRAYS:
        values = [a[name] for _, a in steps]
        successive = [correlation(a, b) for a, b in zip(values, values[1:], strict=False)]
        assert all(0.8 < c < 0.99999 for c in successive), (name, successive)
        # The structure moves on: the first step resembles the last less than its successor.
        assert correlation(values[0], values[-1]) < successive[0] - 0.01, name


def test_temperature_cools_as_well_as_moving() -> None:
    # Over 3 s the hot pockets' excess falls to exp(-3 / 4) ~ 0.47 of what it was (stirring alone keeps peaks).
    series = list(generate_series(SHAPE, 31, seed=0))
    first, last = (float(series[i][1]["temperature"].max()) for i in (0, -1))
    assert last < first - 10.0


def test_velocity_is_divergence_free_with_the_chosen_rms() -> None:
    # 26 points per axis resolve every mode (up to 12 periods), so the grid holds the full flow.
    shape = (26, 26, 26)
    velocity = next(iter(generate_series(shape, 1, seed=2)))[1]["velocity"].astype(np.float64)
    assert np.sqrt(np.mean(velocity**2)) == pytest.approx(U_RMS, rel=1e-4)
    # Spectral divergence: sum_i k_i u_i(k) vanishes mode by mode.
    k = np.fft.fftfreq(26) * 26
    kz, ky, kx = np.meshgrid(k, k, k, indexing="ij")
    spectra = [np.fft.fftn(velocity[..., c]) for c in range(3)]
    divergence = kx * spectra[0] + ky * spectra[1] + kz * spectra[2]
    gradient = np.sqrt(sum(np.abs(w * s) ** 2 for w in (kx, ky, kz) for s in spectra).sum())
    assert np.sqrt((np.abs(divergence) ** 2).sum()) < 1e-5 * gradient


def test_sampling_wraps_x_and_y_and_clamps_z() -> None:
    geometry = default_geometry((5, 4, 3))
    h = geometry.spacing[0]
    field = torch.arange(60, dtype=torch.float32).reshape(1, 3, 4, 5)
    offset = torch.zeros((3, 3, 4, 5))
    assert torch.allclose(_sample(field, offset, geometry), field)
    offset[0] = h  # every point reads one point to its left (-x): the first column reads the last
    assert torch.allclose(_sample(field, offset, geometry), torch.roll(field, 1, dims=3), atol=1e-4)
    offset[0], offset[1] = 0.0, -h  # one point in +y, wrapping
    assert torch.allclose(_sample(field, offset, geometry), torch.roll(field, -1, dims=2), atol=1e-4)
    offset[1], offset[2] = 0.0, 2.5 * h  # 2.5 points down from every plane: below the bottom, clamped to it
    assert torch.allclose(_sample(field, offset, geometry), field[:, :1].expand(1, 3, 4, 5), atol=1e-4)
    offset[2] = -0.5 * h  # half a point up: the mean of two planes, the top one clamped to itself
    expected = torch.cat([0.5 * (field[:, :-1] + field[:, 1:]), field[:, -1:]], dim=1)
    assert torch.allclose(_sample(field, offset, geometry), expected, atol=1e-4)


@pytest.mark.parametrize("steps_count", [0, -1, 1.5, True, 10_001])
def test_bad_step_counts_are_rejected(steps_count) -> None:
    with pytest.raises(SettingsError, match="steps"):
        generate_series(SHAPE, steps_count)


@pytest.mark.parametrize("shape", [(1, 4, 4), (4, 4), ("a", 4, 4)])
def test_bad_shapes_are_rejected(shape) -> None:
    with pytest.raises(SettingsError):
        generate_series(shape, 2)
