"""Training's C kernels on the CPU: the trilinear lookup (srnvtk.native.trilinear: the values and gradients of torch's
grid_sample) and Snake (srnvtk.native.snake: those of x + sin(x)^2 in torch), and the fallbacks to torch where the
kernels do not apply."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from srnvtk import native
from srnvtk.config import FVSRNConfig
from srnvtk.models import build_model
from srnvtk.native.snake import snake
from srnvtk.native.trilinear import trilinear_features
from srnvtk.volume import Geometry

needs_compiler = pytest.mark.skipif(native.find_compiler() is None, reason="no C compiler")


def reference(grid: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    sample_at = positions.view(1, -1, 1, 1, 3)
    feats = F.grid_sample(grid.unsqueeze(0), sample_at, mode="bilinear", padding_mode="border", align_corners=True)
    return feats.view(grid.shape[0], -1).t()


@needs_compiler
# 16 and 12 channels: whole vectors of 8 channels, and a remainder after them (the backward pass)
@pytest.mark.parametrize("shape", [(16, 9, 8, 7), (12, 4, 6, 5), (3, 2, 5, 7), (4, 1, 3, 2)])
def test_values_and_gradients_are_grid_samples(shape) -> None:
    generator = torch.Generator().manual_seed(sum(shape))
    grid = torch.randn(*shape, generator=generator, requires_grad=True)
    positions = torch.rand(3000, 3, generator=generator) * 2.6 - 1.3  # beyond the border too
    positions[:5] = 1.0
    positions[5:10] = -1.0
    ours = trilinear_features(grid, positions)
    assert ours is not None
    theirs = reference(grid, positions)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=2e-6)
    weights = torch.randn(theirs.shape, generator=generator)
    (ours_grad,) = torch.autograd.grad((ours * weights).sum(), grid)
    (theirs_grad,) = torch.autograd.grad((theirs * weights).sum(), grid)
    torch.testing.assert_close(ours_grad, theirs_grad, rtol=1e-5, atol=2e-5)


def test_falls_back_where_the_kernel_does_not_apply(monkeypatch) -> None:
    grid = torch.randn(4, 3, 3, 3)
    assert trilinear_features(grid, torch.zeros(5, 3, requires_grad=True)) is None  # a gradient for positions
    assert trilinear_features(grid.double(), torch.zeros(5, 3, dtype=torch.float64)) is None
    monkeypatch.setenv("SRNVTK_NATIVE", "0")
    monkeypatch.setattr(native, "_loaded", {})
    assert trilinear_features(grid, torch.zeros(5, 3)) is None


@needs_compiler
def test_a_training_step_is_the_same_with_and_without_the_kernel(monkeypatch) -> None:
    geometry = Geometry((0, 20, 0, 15, 0, 10))
    positions = torch.rand(512, 3, generator=torch.Generator().manual_seed(0)) * 2 - 1
    grads = []
    for setting in ("1", "0"):
        monkeypatch.setenv("SRNVTK_NATIVE", setting)
        monkeypatch.setattr(native, "_loaded", {})
        torch.manual_seed(0)
        model = build_model(FVSRNConfig(grid_channels=4, grid_resolution=6, mlp_width=8, mlp_layers=2), geometry)
        with torch.no_grad():
            model.grid.normal_()
        model(positions).square().sum().backward()
        grads.append(model.grid.grad.clone())
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-5)


@needs_compiler
@pytest.mark.parametrize(("scale", "tolerance"), [(1.0, 2e-6), (30.0, 2e-5), (3000.0, 2e-3)])
def test_snake_values_and_gradients_are_torchs(scale, tolerance) -> None:
    generator = torch.Generator().manual_seed(int(scale))
    x = (torch.randn(1001, 7, generator=generator) * scale).requires_grad_(True)  # not a multiple of the lanes
    ours, theirs = snake(x), x + torch.sin(x).square()
    assert ours is not None
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=tolerance)
    weights = torch.randn(x.shape, generator=generator)
    (ours_grad,) = torch.autograd.grad((ours * weights).sum(), x)
    (theirs_grad,) = torch.autograd.grad((theirs * weights).sum(), x)
    torch.testing.assert_close(ours_grad, theirs_grad, rtol=1e-5, atol=1e-5)


@needs_compiler
def test_snake_carries_nan_and_empty_tensors() -> None:
    x = torch.tensor([float("nan"), 0.0, float("inf")])
    assert snake(x)[0].isnan() and snake(x)[1] == 0.0
    assert snake(torch.zeros(0)).shape == (0,)


def test_snake_falls_back_where_the_kernel_does_not_apply(monkeypatch) -> None:
    assert snake(torch.zeros(3, dtype=torch.float64)) is None
    monkeypatch.setenv("SRNVTK_NATIVE", "0")
    monkeypatch.setattr(native, "_loaded", {})
    assert snake(torch.zeros(3)) is None
