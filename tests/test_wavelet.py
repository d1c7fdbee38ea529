"""The 3D DWT: perfect reconstruction, agreement with PyWavelets, packed layout, gradients and error messages."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import pywt
import torch

from srnvtk.errors import SettingsError
from srnvtk.wavelet import (
    WaveletTransform3D,
    level_matrices,
    max_levels,
    resolve_levels,
    subbands,
    wavelet_names,
)

WAVELETS = ["haar", "db2", "db4", "sym4", "coif1", "bior2.2", "bior4.4"]
SHAPES = [(2, 16, 16, 16), (1, 17, 12, 9), (3, 24, 20, 30)]



def random_grid(shape: tuple[int, ...], dtype: torch.dtype = torch.float32, seed: int = 0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(dtype)


@pytest.mark.parametrize("levels", [1, 2, None])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("wavelet", WAVELETS)
def test_round_trip_is_exact_and_not_overcomplete(wavelet, shape, levels):
    transform = WaveletTransform3D(shape[1:], wavelet, levels)
    grid = random_grid(shape)
    coeffs = transform(grid)
    assert coeffs.shape == grid.shape  # one coefficient per grid value
    restored = transform.inverse(coeffs)
    assert ((restored - grid).abs().max() / grid.abs().max()).item() < 1e-5


@pytest.mark.parametrize("wavelet", WAVELETS)
@pytest.mark.parametrize(
    ("shape", "levels"), [((2, 16, 16, 16), 1), ((2, 16, 16, 16), 3), ((1, 24, 20, 28), 2), ((1, 8, 12, 4), 2)]
)
def test_matches_pywavelets_where_it_is_non_expansive(wavelet, shape, levels):
    grid = random_grid(shape)
    transform = WaveletTransform3D(shape[1:], wavelet, levels)
    coeffs = transform(grid)
    with warnings.catch_warnings():  # pywt warns when a level is past dwt_max_level; periodization is still exact
        warnings.simplefilter("ignore", UserWarning)
        reference = pywt.wavedecn(grid.double().numpy(), wavelet, mode="periodization", level=levels, axes=(-3, -2, -1))
    expected = [("aaa", levels, reference[0])]
    for level, details in zip(range(levels, 0, -1), reference[1:], strict=True):
        expected += [(key, level, details[key]) for key in sorted(details)]
    bands = transform.subbands()
    assert [(band.key, band.level) for band in bands] == [(key, level) for key, level, _ in expected]
    scale = grid.abs().max().item()
    for band, (_, _, values) in zip(bands, expected, strict=True):
        np.testing.assert_allclose(coeffs[band.index].numpy(), values, rtol=0, atol=1e-5 * scale)
    restored = pywt.waverecn(reference, wavelet, mode="periodization", axes=(-3, -2, -1))
    np.testing.assert_allclose(transform.inverse(coeffs).numpy(), restored, rtol=0, atol=1e-5 * scale)


@pytest.mark.parametrize("wavelet", ["haar", "db2", "sym4", "bior4.4"])
def test_orthogonal_wavelets_preserve_energy_on_even_grids(wavelet):
    grid = random_grid((2, 16, 8, 12), torch.float64)
    coeffs = WaveletTransform3D(grid.shape[1:], wavelet, 2)(grid)
    ratio = (coeffs.square().sum() / grid.square().sum()).item()
    if pywt.Wavelet(wavelet).orthogonal:
        assert ratio == pytest.approx(1.0, abs=1e-9)
    else:
        assert ratio != pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("wavelet", ["haar", "db2", "coif1", "bior2.2"])
def test_constant_grid_has_no_details_for_odd_sizes(wavelet):
    """The carried last sample of an odd axis is scaled like the low-pass output, so constants stay constant."""
    transform = WaveletTransform3D((9, 7, 5), wavelet, (3, 3, 2))
    coeffs = transform(torch.full((1, 9, 7, 5), 2.5, dtype=torch.float64))
    approximation, *details = transform.subbands()
    for band in details:
        assert coeffs[band.index].abs().max().item() < 1e-12, band
    low = coeffs[approximation.index]
    assert (low - low.flatten()[0]).abs().max().item() < 1e-12


@pytest.mark.parametrize("wavelet", ["haar", "db4", "bior2.2", "rbio3.1", "coif2"])
def test_one_level_matrices_invert_each_other_for_all_lengths(wavelet):
    for n in range(2, 19):
        analysis, synthesis = level_matrices(n, wavelet)
        np.testing.assert_allclose(synthesis @ analysis, np.eye(n), atol=1e-10)


def test_even_length_matrices_match_pywt_dwt():
    x = np.random.default_rng(1).standard_normal(10)
    for wavelet in ["db2", "db4", "bior2.2"]:  # db4 (8 taps) on 10 samples wraps around
        analysis, _ = level_matrices(10, wavelet)
        np.testing.assert_allclose(analysis @ x, np.concatenate(pywt.dwt(x, wavelet, mode="periodization")))


def test_odd_length_layout_carries_last_sample():
    analysis, _ = level_matrices(7, "haar")
    coeffs = analysis @ np.arange(7.0)
    low, high = pywt.dwt(np.arange(6.0), "haar", mode="periodization")
    np.testing.assert_allclose(coeffs, np.concatenate([low, [6.0 * np.sqrt(2)], high]))


@pytest.mark.parametrize("shape", [(16, 16, 16), (17, 12, 9), (8, 64, 64), (1, 5, 33)])
def test_subbands_tile_the_grid_once(shape):
    levels = max_levels(shape, "haar")
    cover = np.zeros(shape, dtype=int)
    for band in subbands(shape, levels):
        cover[band.slices] += 1
    assert (cover == 1).all()
    assert sum(band.size for band in subbands(shape, levels)) == np.prod(shape)


def test_automatic_levels_are_per_axis_dwt_max_level():
    assert max_levels((8, 64, 64), "db2") == (1, 4, 4)
    assert max_levels((17, 12, 9), "haar") == tuple(pywt.dwt_max_level(n, 2) for n in (17, 12, 9))
    transform = WaveletTransform3D((8, 64, 64), "db2")
    assert transform.levels == (1, 4, 4)
    # past z's single level, z is not split: no subband key has a 'd' in z there
    assert {band.key for band in transform.subbands() if band.level >= 2} == {"aaa", "aad", "ada", "add"}
    grid = random_grid((2, 8, 64, 64))
    assert torch.allclose(transform.inverse(transform(grid)), grid, atol=1e-5)


def test_per_axis_and_zero_levels():
    grid = random_grid((2, 6, 10, 5))
    assert resolve_levels((6, 10, 5), "db2", (0, 2, 1)) == (0, 2, 1)
    transform = WaveletTransform3D((6, 10, 5), "db2", (0, 2, 1))
    assert torch.allclose(transform.inverse(transform(grid)), grid, atol=1e-5)
    identity = WaveletTransform3D((6, 10, 5), "db2", 0)
    assert torch.equal(identity(grid), grid)
    assert [band.key for band in identity.subbands()] == ["aaa"]


def test_leading_dims_dtype_and_shape_checks():
    transform = WaveletTransform3D((4, 6, 8), "db2", 1)
    single = random_grid((4, 6, 8), torch.float64)
    batched = random_grid((2, 3, 4, 6, 8), torch.float64)
    assert torch.allclose(transform(batched)[1, 2], transform(batched[1, 2]))
    assert transform(single).dtype == torch.float64
    assert torch.allclose(transform.inverse(transform(single)), single, atol=1e-12)
    with pytest.raises(ValueError, match=r"\(\.\.\., 4, 6, 8\)"):
        transform(torch.zeros(1, 4, 6, 9))
    assert transform.state_dict() == {}  # the matrices are derived, never stored


def test_gradients_flow_through_inverse_and_forward():
    transform = WaveletTransform3D((5, 6, 4), "db2", 2)
    coeffs = random_grid((1, 5, 6, 4), torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(transform.inverse, (coeffs,))
    assert torch.autograd.gradcheck(transform, (coeffs,))
    mask = torch.zeros_like(coeffs).requires_grad_()
    (transform.inverse(coeffs * torch.sigmoid(mask)).square().sum()).backward()
    assert mask.grad is not None and mask.grad.abs().sum() > 0


def test_wavelet_names_are_pywts_discrete_ones():
    names = wavelet_names()
    assert set(WAVELETS) <= set(names)
    assert set(names) == set(pywt.wavelist(kind="discrete")) - {"dmey"}


def test_unknown_wavelet_lists_valid_names():
    with pytest.raises(SettingsError) as info:
        WaveletTransform3D((8, 8, 8), "db99")
    message = str(info.value)
    for part in ("'db99'", "haar", "db1..db38", "sym2..sym20", "coif1..coif17", "bior1.1..bior6.8", "wavelet_names"):
        assert part in message
    for continuous in ("morl", "gaus", "mexh", "cmor"):
        assert continuous not in message
    with pytest.raises(SettingsError, match="valid names"):
        WaveletTransform3D((8, 8, 8), "morl")  # continuous wavelet
    with pytest.raises(SettingsError, match="does not reconstruct perfectly"):
        WaveletTransform3D((8, 8, 8), "dmey")


@pytest.mark.parametrize("levels", [5, (1, 5, 1), -1, 2.5, (1, 2), True])
def test_bad_levels_give_a_clear_error(levels):
    with pytest.raises(SettingsError, match="levels"):
        WaveletTransform3D((17, 12, 9), "db2", levels)


def test_too_many_levels_message_names_the_limit():
    with pytest.raises(SettingsError, match=r"at most \(5, 4, 4\) levels"):
        WaveletTransform3D((17, 12, 9), "db2", 5)
    assert WaveletTransform3D((17, 12, 9), "db2", 4).levels == (4, 4, 4)  # more than automatic is allowed
