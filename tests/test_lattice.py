"""The fast lattice decoder agrees with evaluating the network point by point.

Every test runs twice: with the fused C kernel (srnvtk.native; skipped where no C compiler works) and with
the torch path that replaces it there."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from srnvtk import decode as decode_module
from srnvtk.config import FVSRNConfig
from srnvtk.decode import decode, resampled_geometry, strided_geometry
from srnvtk.fileformat import SRNFile
from srnvtk.lattice import LatticeFVSRN
from srnvtk.models import build_model
from srnvtk.native import find_compiler
from srnvtk.volume import Geometry

SOURCE = Geometry((0, 20, 0, 16, 0, 12), (0.5, -1.0, 2.0), (0.1, 0.2, 0.15))


@pytest.fixture(autouse=True, params=["fused", "torch"])
def lattice_path(request, monkeypatch):
    if request.param == "torch":
        monkeypatch.setenv("SRNVTK_NATIVE", "0")
    elif find_compiler() is None:
        pytest.skip("no C compiler for the fused kernel")
    return request.param


def random_model(**settings) -> torch.nn.Module:
    torch.manual_seed(3)
    model = build_model(FVSRNConfig(**settings), SOURCE)
    with torch.no_grad():
        model.grid.normal_()
        for p in model.mlp.parameters():
            p.normal_(0.0, 0.3)
    return model.eval()


def per_point(model: torch.nn.Module, xs, ys, zs) -> torch.Tensor:
    zz, yy, xx = torch.meshgrid(zs, ys, xs, indexing="ij")
    with torch.inference_mode():
        values = model(torch.stack([xx.reshape(-1), yy.reshape(-1), zz.reshape(-1)], 1))
    return values.reshape(len(zs), len(ys), len(xs))


@pytest.mark.parametrize("settings", [{}, {"fourier_features": 0}, {"mlp_layers": 1, "grid_channels": 3},
                                      {"grid_shape": (5, 2, 7), "mlp_width": 8}, {"mlp_width": 13, "mlp_layers": 3}])
def test_lattice_equals_point_evaluation(settings, lattice_path):
    model = random_model(grid_resolution=9, **settings)
    # coordinates inside, on and beyond the border (clamped like grid_sample's border padding)
    xs, ys, zs = torch.linspace(-1.1, 1.0, 23), torch.linspace(-1, 1.2, 11), torch.tensor([-1.0, -0.33, 0.0, 0.9, 1.0])
    reference = per_point(model, xs, ys, zs)
    with torch.inference_mode():
        lattice = LatticeFVSRN(model)
        assert (lattice.fused is not None) == (lattice_path == "fused")
        fast = lattice.evaluate(xs, ys, zs, batch_points=37)
    scale = reference.abs().max().item()
    assert scale > 0.1
    assert (fast - reference).abs().max().item() <= 1e-5 * scale


def test_batch_size_does_not_change_the_values_on_the_cpu():
    model = random_model(grid_resolution=6)
    xs, ys, zs = torch.linspace(-1, 1, 17), torch.linspace(-1, 1, 13), torch.linspace(-1, 1, 4)
    with torch.inference_mode():
        small = LatticeFVSRN(model).evaluate(xs, ys, zs, batch_points=17)
        large = LatticeFVSRN(model).evaluate(xs, ys, zs, batch_points=1 << 20)
    assert torch.equal(small, large)


def test_decode_uses_the_lattice_path_and_matches_the_generic_one(monkeypatch):
    model = random_model(grid_resolution=8)
    output = resampled_geometry(SOURCE, (15, 9, 6))
    fast = decode(SRNFile.of_model(model, SOURCE, (0.0, 10.0), "float32"), output, device="cpu")
    monkeypatch.setattr(decode_module, "LatticeFVSRN", _refuse)
    generic = decode(SRNFile.of_model(model, SOURCE, (0.0, 10.0), "float32"), output, device="cpu")
    assert np.abs(fast - generic).max() <= 1e-5 * np.abs(generic).max()


def _refuse(*_args, **_kwargs):
    raise TypeError("lattice path disabled for this test")


def test_strided_decode_is_the_matching_slice_of_the_full_grid():
    model = random_model(grid_resolution=8)
    full = decode(SRNFile.of_model(model, SOURCE, (0.0, 1.0), "float32"), device="cpu")
    strided = decode(SRNFile.of_model(model, SOURCE, (0.0, 1.0), "float32"), strided_geometry(SOURCE, (3, 2, 4)),
                     device="cpu")
    np.testing.assert_array_equal(strided, full[::4, ::2, ::3])


def test_cuda_out_of_memory_falls_back_to_the_cpu(monkeypatch):
    model = random_model(grid_resolution=5)
    expected = decode(SRNFile.of_model(model, SOURCE, (0.0, 1.0), "float32"), device="cpu")
    calls = []
    real = decode_module._decode_parts

    def flaky(srn, parts, request, device):
        calls.append(device)
        if len(calls) == 1:
            raise torch.cuda.OutOfMemoryError("simulated")
        return real(srn, parts, request, device)

    monkeypatch.setattr(decode_module, "_decode_parts", flaky)
    monkeypatch.setattr(decode_module, "resolve_device", lambda _name: torch.device("cuda"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        values = decode(SRNFile.of_model(model, SOURCE, (0.0, 1.0), "float32"), device="cuda")
    assert [d.type for d in calls] == ["cuda", "cpu"]
    assert any("out of memory" in str(w.message) for w in caught)
    np.testing.assert_array_equal(values, expected)


def test_half_precision_error_is_small_for_a_tame_network_and_large_for_a_wild_one():
    torch.manual_seed(0)
    tame = build_model(FVSRNConfig(grid_resolution=8), SOURCE).eval()  # as initialised: small activations
    assert 0 < decode_module.half_precision_error(tame, torch.device("cpu")) <= 0.5 * decode_module.HALF_TOLERANCE
    wild = random_model(grid_resolution=8)  # unit-variance grid, weights of 0.3: activations of several units
    assert decode_module.half_precision_error(wild, torch.device("cpu")) > 10 * decode_module.HALF_TOLERANCE


def test_a_half_precision_lattice_leaves_the_model_in_float32():
    model = random_model(grid_resolution=4)
    LatticeFVSRN(model, torch.float16)
    assert {p.dtype for p in model.parameters()} == {torch.float32}


def test_auto_precision_takes_half_only_on_cuda_and_only_where_it_is_accurate(monkeypatch):
    model = random_model(grid_resolution=4)
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    use_half = decode_module.use_half_precision
    monkeypatch.setattr(decode_module, "half_precision_error", lambda *_: 0.5 * decode_module.HALF_TOLERANCE)
    assert use_half(model, cuda, "auto") and use_half(model, cuda, "fp16") and not use_half(model, cuda, "fp32")
    assert not use_half(model, cpu, "auto") and not use_half(model, cpu, "fp16")
    monkeypatch.setattr(decode_module, "half_precision_error", lambda *_: 2 * decode_module.HALF_TOLERANCE)
    assert not use_half(model, cuda, "auto") and use_half(model, cuda, "fp16")


def test_bad_precision_is_refused():
    with pytest.raises(ValueError, match="precision"):
        decode(SRNFile.of_model(random_model(grid_resolution=4), SOURCE, (0.0, 1.0)), precision="fp8")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("network", ["tame", "wild"])
def test_auto_precision_on_cuda_agrees_with_fp32_within_1e_3_of_the_range(network):
    torch.manual_seed(0)
    if network == "tame":
        model = build_model(FVSRNConfig(grid_resolution=8), SOURCE).eval()
    else:
        model = random_model(grid_resolution=8)
    fp32 = decode(SRNFile.of_model(model, SOURCE, (0.0, 1.0), "float32"), device="cuda", precision="fp32")
    auto = decode(SRNFile.of_model(model, SOURCE, (0.0, 1.0), "float32"), device="cuda", precision="auto")
    assert np.abs(auto - fp32).max() < 1e-3  # the value range is 1: fp16 where it is this close, else fp32
    if network == "tame":
        assert decode_module.use_half_precision(model, torch.device("cuda"), "auto")


def test_threads_split_planes_without_changing_the_values():
    model = random_model(grid_resolution=6)
    xs, ys, zs = torch.linspace(-1, 1, 9), torch.linspace(-1, 1, 7), torch.linspace(-1, 1, 300)
    lattice = LatticeFVSRN(model)
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = lattice.evaluate(xs, ys, zs, batch_points=1)
        torch.set_num_threads(2)
        two = lattice.evaluate(xs, ys, zs, batch_points=1)
        assert torch.get_num_threads() == 2  # restored after the worker threads ran
    finally:
        torch.set_num_threads(previous)
    assert torch.equal(one, two)
