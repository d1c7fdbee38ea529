"""fV-SRN: latent grid sized by the physical aspect ratio, axis order of the grid lookup, layers, gradients."""

from __future__ import annotations

import math

import torch

from srnvtk.config import FVSRNConfig
from srnvtk.models import FVSRN, build_model
from srnvtk.models.fvsrn import aspect_of, grid_shape_for
from srnvtk.models.layers import FourierFeatures, Snake, mlp
from srnvtk.volume import Geometry


def box(lengths_xyz: tuple[float, float, float], points: tuple[int, int, int] = (9, 9, 9)) -> Geometry:
    """A grid with the given point counts spanning the given physical lengths along x, y, z."""
    spacing = tuple(length / (n - 1) for length, n in zip(lengths_xyz, points, strict=True))
    return Geometry((0, points[0] - 1, 0, points[1] - 1, 0, points[2] - 1), (3.0, -2.0, 7.5), spacing)


def random_positions(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand((n, 3), generator=torch.Generator().manual_seed(seed)) * 2 - 1


# ---------------------------------------------------------------------------------------------
# Grid shape and aspect


def test_grid_shape_follows_the_physical_aspect_ratio() -> None:
    config = FVSRNConfig(grid_resolution=16)
    # A 64 x 32 x 16 box: x gets the full resolution, y half, z a quarter; returned as (z, y, x).
    assert grid_shape_for(config, box((64.0, 32.0, 16.0))) == (4, 8, 16)
    # The same box turned around: the longest axis is now z.
    assert grid_shape_for(config, box((16.0, 32.0, 64.0))) == (16, 8, 4)


def test_grid_shape_depends_on_lengths_not_point_counts() -> None:
    config = FVSRNConfig(grid_resolution=20)
    # Equal point counts, unequal spacing: the grid follows the world-space box.
    assert grid_shape_for(config, box((10.0, 5.0, 2.5), points=(11, 11, 11))) == (5, 10, 20)
    # Unequal point counts, equal lengths: a cube of latent cells.
    assert grid_shape_for(config, box((1.0, 1.0, 1.0), points=(33, 9, 5))) == (20, 20, 20)


def test_grid_shape_never_drops_below_two() -> None:
    shape = grid_shape_for(FVSRNConfig(grid_resolution=8), box((100.0, 1.0, 1.0)))
    assert shape == (2, 2, 8)


def test_explicit_grid_shape_wins() -> None:
    config = FVSRNConfig(grid_resolution=16, grid_shape=(3, 5, 7))
    assert grid_shape_for(config, box((64.0, 32.0, 16.0))) == (3, 5, 7)
    model = build_model(config, box((64.0, 32.0, 16.0)))
    assert tuple(model.grid.shape) == (config.grid_channels, 3, 5, 7)


def test_aspect_is_relative_to_the_longest_axis() -> None:
    aspect = aspect_of(box((64.0, 32.0, 16.0)))
    assert torch.allclose(aspect, torch.tensor([1.0, 0.5, 0.25]))


def test_build_model_sizes_grid_and_mlp() -> None:
    config = FVSRNConfig(grid_channels=5, grid_resolution=12, mlp_width=24, mlp_layers=3, fourier_features=3)
    model = build_model(config, box((64.0, 32.0, 16.0)))
    assert tuple(model.grid.shape) == (5, 3, 6, 12)
    first = model.mlp[0]
    assert first.in_features == 3 + 6 * 3 + 5
    linears = [m for m in model.mlp if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 3 + 1  # hidden layers plus the head
    assert linears[-1].out_features == 1


# ---------------------------------------------------------------------------------------------
# Forward pass


def test_output_is_one_value_per_position() -> None:
    config = FVSRNConfig(grid_channels=4, grid_resolution=6, mlp_width=8, mlp_layers=2)
    model = build_model(config, box((2.0, 1.0, 1.0)))
    out = model(random_positions(37))
    assert out.shape == (37,)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()
    assert model(random_positions(0)).shape == (0,)


def test_grid_lookup_uses_x_y_z_positions_on_a_z_y_x_grid() -> None:
    """Corners of [-1, 1]^3 read the grid's corner cells, with x along the grid's last axis."""
    model = FVSRN(FVSRNConfig(grid_channels=2), (3, 4, 5), torch.ones(3))
    with torch.no_grad():
        model.grid.copy_(torch.arange(model.grid.numel(), dtype=torch.float32).reshape(model.grid.shape))
    corners = torch.tensor(
        [[-1.0, -1.0, -1.0], [1.0, -1.0, -1.0], [-1.0, 1.0, -1.0], [-1.0, -1.0, 1.0], [1.0, 1.0, 1.0]]
    )
    feats = model.grid_features(corners)
    g = model.grid
    expected = torch.stack([g[:, 0, 0, 0], g[:, 0, 0, -1], g[:, 0, -1, 0], g[:, -1, 0, 0], g[:, -1, -1, -1]])
    assert torch.equal(feats, expected)


def test_grid_lookup_is_trilinear_between_cells() -> None:
    model = FVSRN(FVSRNConfig(grid_channels=1), (2, 2, 2), torch.ones(3))
    with torch.no_grad():
        model.grid.copy_(torch.tensor([[[[0.0, 1.0], [2.0, 3.0]], [[4.0, 5.0], [6.0, 7.0]]]]))
    # value = x + 2 y + 4 z with x, y, z in [0, 1]: linear, so trilinear interpolation is exact.
    positions = torch.tensor([[0.0, 0.0, 0.0], [0.5, -0.5, 0.0], [-1.0, 1.0, 0.5]])
    unit = (positions + 1) / 2
    expected = unit[:, 0] + 2 * unit[:, 1] + 4 * unit[:, 2]
    assert torch.allclose(model.grid_features(positions)[:, 0], expected, atol=1e-6)


def test_output_depends_on_position() -> None:
    config = FVSRNConfig(grid_channels=4, grid_resolution=6, mlp_width=8, mlp_layers=2)
    model = build_model(config, box((1.0, 1.0, 1.0)))
    with torch.no_grad():
        model.grid.normal_(generator=torch.Generator().manual_seed(1))
    out = model(random_positions(64))
    assert out.std() > 1e-3


# ---------------------------------------------------------------------------------------------
# Layers


def test_snake_is_x_plus_sin_squared_and_monotone() -> None:
    x = torch.linspace(-10, 10, 2001, dtype=torch.float64)
    y = Snake()(x)
    assert torch.allclose(y, x + torch.sin(x) ** 2)
    assert Snake()(torch.zeros(1)).item() == 0.0
    assert (y.diff() >= -1e-12).all()  # derivative 1 + sin(2x) >= 0
    assert not torch.allclose(y, x)  # not the identity


def test_fourier_features_shape_and_values() -> None:
    octaves = 3
    aspect = torch.tensor([1.0, 0.5, 0.25])
    features = FourierFeatures(octaves, aspect)
    positions = random_positions(50)
    out = features(positions)
    assert features.out_features == 18
    assert out.shape == (50, 18)
    assert out.abs().max() <= 1.0
    sin, cos = out[:, :9], out[:, 9:]
    assert torch.allclose(sin**2 + cos**2, torch.ones_like(sin), atol=1e-5)
    # Element (axis a, octave k) is sin(pi 2^k aspect_a p_a): check one by hand.
    a, k = 1, 2
    expected = torch.sin(math.pi * 2**k * aspect[a] * positions[:, a])
    assert torch.allclose(sin[:, a * octaves + k], expected, atol=1e-5)


def test_fourier_features_see_the_aspect() -> None:
    positions = random_positions(20)
    cube = FourierFeatures(2, torch.ones(3))(positions)
    flat = FourierFeatures(2, torch.tensor([1.0, 1.0, 0.25]))(positions)
    assert torch.allclose(cube[:, :4], flat[:, :4])  # x and y unchanged
    assert not torch.allclose(cube[:, 4:6], flat[:, 4:6])  # z sees the shorter axis


def test_zero_fourier_octaves_give_no_features() -> None:
    features = FourierFeatures(0, torch.ones(3))
    assert features.out_features == 0
    assert features(random_positions(5)).shape == (5, 0)
    model = build_model(FVSRNConfig(grid_channels=3, grid_resolution=4, mlp_width=8, mlp_layers=1, fourier_features=0),
                        box((1.0, 1.0, 1.0)))
    assert model.mlp[0].in_features == 3 + 3
    assert model(random_positions(4)).shape == (4,)


def test_mlp_structure() -> None:
    net = mlp(7, 11, 3)
    kinds = [type(m).__name__ for m in net]
    assert kinds == ["Linear", "Snake", "Linear", "Snake", "Linear", "Snake", "Linear"]
    assert net(torch.zeros(2, 7)).shape == (2, 1)


# ---------------------------------------------------------------------------------------------
# Gradients


def test_model_is_differentiable_in_grid_and_mlp() -> None:
    model = build_model(FVSRNConfig(grid_channels=4, grid_resolution=6, mlp_width=8, mlp_layers=2, fourier_features=2),
                        box((2.0, 1.0, 1.5)))
    loss = (model(random_positions(256)) - 0.5).square().mean()
    loss.backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name


def test_only_cells_near_the_positions_get_gradient() -> None:
    config = FVSRNConfig(grid_channels=2, grid_resolution=8, mlp_width=8, mlp_layers=1)
    model = build_model(config, box((1.0, 1.0, 1.0)))
    # All positions in the corner cell next to (-1, -1, -1): only the 2x2x2 corner nodes are touched.
    positions = torch.rand((32, 3), generator=torch.Generator().manual_seed(3)) * 0.2 - 1.0
    model(positions).sum().backward()
    touched = model.grid.grad.abs().sum(dim=0) > 0
    assert touched[:2, :2, :2].all()
    assert touched.sum() == 8


def test_positions_get_gradients() -> None:
    config = FVSRNConfig(grid_channels=2, grid_resolution=5, mlp_width=8, mlp_layers=2)
    model = build_model(config, box((1.0, 1.0, 1.0)))
    positions = random_positions(16).requires_grad_(True)
    model(positions).sum().backward()
    assert positions.grad is not None and torch.isfinite(positions.grad).all()
    assert positions.grad.abs().sum() > 0
