"""The fused Triton decoders (srnvtk.gpu) agree with the CPU kernels, checked without a GPU by Triton's interpreter.

The interpreter runs the same kernels on CPU tensors, one program after another with numpy, so lattices are
small (a few tiles). Tolerance: in fp32 the kernels differ from the CPU kernels only by rounding (another order of
the interpolation and of the sums), within 1e-5 of the largest value; fp16 products are held to the accuracy
contract of precision='auto' (1e-3 of the value range) on a network as initialised. The approximate GPU sines
(sin='approx') need a GPU: tests/test_gpu_cuda.py checks them and the compiled kernels where CUDA is present.
Skipped where triton is not installed, and in a process whose kernels were already compiled for a GPU.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from srnvtk import decode as decode_module
from srnvtk import gpu
from srnvtk.config import FVSRNConfig, NeurcompConfig, PruningConfig
from srnvtk.decode import decode, evaluation_path, strided_geometry
from srnvtk.fileformat import SRNFile
from srnvtk.lattice import LatticeFVSRN
from srnvtk.models import build_model
from srnvtk.models.layers import aspect_of
from srnvtk.models.neurcomp import Neurcomp
from srnvtk.neurcomp_eval import FoldedNeurcomp
from srnvtk.pruning import attach_masks
from srnvtk.volume import Geometry

SOURCE = Geometry((0, 8, 0, 6, 0, 4), (0.5, -1.0, 2.0), (0.1, 0.2, 0.15))  # 9 x 7 x 5 points
TOLERANCE = 1e-5  # fp32: of the largest value
# coordinates inside, on and beyond the border (clamped like grid_sample's border padding)
XS, YS, ZS = torch.linspace(-1.1, 1.0, 9), torch.linspace(-1, 1.2, 7), torch.tensor([-1.0, -0.33, 0.0, 0.9, 1.0])


@pytest.fixture(scope="module", autouse=True)
def interpreter():
    if torch.cuda.is_available() and not gpu.interpreting():
        pytest.skip("a GPU is here: test_gpu_cuda.py checks the compiled kernels (TRITON_INTERPRET=1 runs these)")
    if not gpu.use_interpreter():  # imports triton itself: the interpreter must be chosen before that
        pytest.skip(f"no Triton interpreter here: {gpu.unavailable_reason() or 'triton was imported for a GPU'}")


def random_fvsrn(weight_scale: float = 0.3, **settings) -> torch.nn.Module:
    torch.manual_seed(3)
    model = build_model(FVSRNConfig(**{"grid_resolution": 6, **settings}), SOURCE)
    with torch.no_grad():
        model.latent.normal_()
        for p in model.mlp.parameters():
            p.normal_(0.0, weight_scale)
    return model.eval()


def cpu_lattice(model: torch.nn.Module) -> torch.Tensor:
    """The CPU path's values on XS x YS x ZS: the fused C kernel where a compiler works."""
    with torch.inference_mode():
        if isinstance(model, Neurcomp):
            zz, yy, xx = torch.meshgrid(ZS, YS, XS, indexing="ij")
            points = torch.stack([xx.reshape(-1), yy.reshape(-1), zz.reshape(-1)], 1)
            return FoldedNeurcomp(model)(points).reshape(len(ZS), len(YS), len(XS))
        return LatticeFVSRN(model).evaluate(XS, YS, ZS, batch_points=1 << 12)


def triton_lattice(model: torch.nn.Module, dtype: torch.dtype = torch.float32, sin: str = "poly") -> torch.Tensor:
    evaluator = gpu.lattice_evaluator(model, dtype, sin)
    assert evaluator is not None
    return evaluator(XS, YS, ZS)


def assert_agrees(values: torch.Tensor, reference: torch.Tensor, tolerance: float = TOLERANCE) -> None:
    scale = reference.abs().max().item()
    assert scale > 0.05 and torch.isfinite(values).all()
    assert (values - reference).abs().max().item() <= tolerance * scale


@pytest.mark.parametrize("settings", [{}, {"fourier_features": 0}, {"mlp_layers": 1, "grid_channels": 3},
                                      {"grid_shape": (5, 2, 7), "mlp_width": 8}, {"mlp_width": 13, "mlp_layers": 3},
                                      {"grid_channels": 20, "mlp_width": 40, "mlp_layers": 2}])
def test_fvsrn_kernel_agrees_with_the_cpu_kernel(settings):
    # default shape, no Fourier features, no hidden layer after the first, a grid axis of 2 cells, odd widths and
    # channel counts (padded to powers of two), widths above 32
    model = random_fvsrn(**settings)
    assert_agrees(triton_lattice(model), cpu_lattice(model))


@pytest.mark.parametrize("weight_scale", [0.3, 30.0])
def test_each_sine_agrees_for_small_and_large_activations(weight_scale):
    # weights of 30 drive activations to hundreds of radians: the polynomial's range reduction is exercised
    model = random_fvsrn(weight_scale, mlp_width=24, mlp_layers=3)
    reference = cpu_lattice(model)
    for sin in ("poly", "exact"):
        assert_agrees(triton_lattice(model, sin=sin), reference)


def test_pruned_and_baked_grids_decode_like_the_cpu():
    model = random_fvsrn()
    keep = torch.rand((1, *model.latent.shape[1:]), generator=torch.Generator().manual_seed(1)) < 0.3
    model.set_grid_keep(keep)  # 70% of the positions zero, as after baking a pruning mask
    assert_agrees(triton_lattice(model), cpu_lattice(model))


def test_wavelet_grids_decode_like_the_cpu():
    model = random_fvsrn(wavelet="haar", grid_resolution=8)
    assert type(model).__name__ == "WaveletFVSRN"
    assert_agrees(triton_lattice(model), cpu_lattice(model))


def test_models_the_kernels_do_not_cover_get_no_evaluator():
    masked = random_fvsrn()
    attach_masks(masked, PruningConfig(method="binary"))  # training-time masks: the per-point path decodes them
    assert gpu.lattice_evaluator(masked) is None
    assert gpu.lattice_evaluator(random_fvsrn(mlp_width=200)) is None  # wider than MAX_WIDTH
    assert gpu.lattice_evaluator(random_fvsrn(), torch.float64) is None
    with pytest.raises(ValueError, match="GPU"):
        gpu.lattice_evaluator(random_fvsrn(), sin="approx")


def test_half_precision_products_keep_the_auto_contract_on_a_tame_network():
    torch.manual_seed(0)
    tame = build_model(FVSRNConfig(grid_resolution=6), SOURCE).eval()  # as initialised
    full, half = triton_lattice(tame), triton_lattice(tame, torch.float16)
    assert 0 < (half - full).abs().max().item() <= decode_module.HALF_TOLERANCE
    wild = random_fvsrn()  # unit-variance grid, weights of 0.3: fp16 rounding shows
    assert (triton_lattice(wild, torch.float16) - triton_lattice(wild)).abs().max() > decode_module.HALF_TOLERANCE


@pytest.mark.parametrize("residual", [True, False])
@pytest.mark.parametrize("clusters", [0, 16])
def test_neurcomp_kernel_agrees_with_the_inference_form(residual, clusters):
    geometry = Geometry((0, 19, 0, 11, 0, 7), spacing=(1.0, 2.0, 0.5))  # unequal aspect: folded into layer 0
    torch.manual_seed(2)
    model = build_model(NeurcompConfig(width=12, blocks=3, residual=residual, weight_clusters=clusters), geometry)
    if clusters:
        model.share_weights()
    model.eval()
    assert_agrees(triton_lattice(model), cpu_lattice(model))
    assert_agrees(triton_lattice(model, sin="exact"), cpu_lattice(model))


@pytest.mark.parametrize("widths", [[10, 4, 7, 3, 10], [10, 0, 10, 9, 10], [24, 17, 24, 5, 24]])
def test_neurcomp_kernel_of_pruned_networks(widths):
    # pruned layers of any width, down to none at all (the outer layer then gives sin(bias))
    torch.manual_seed(3)
    residual = widths[2] == widths[0] == widths[4]
    model = Neurcomp(NeurcompConfig(width=max(widths), blocks=2, residual=residual), aspect_of(SOURCE), widths).eval()
    assert_agrees(triton_lattice(model), cpu_lattice(model))


def test_every_output_voxel_is_written():
    evaluator = gpu.lattice_evaluator(random_fvsrn())
    for shape in [(5, 7, 9), (2, 1, 130), (1, 33, 1)]:  # part-filled tiles: short rows, rows past a tile's width
        out = torch.full(shape, float("nan"))
        evaluator.fill(*(torch.linspace(-1, 1, n) for n in reversed(shape)), out, 1.0, 0.0)
        assert torch.isfinite(out).all()
    with pytest.raises(ValueError, match="shape"):
        evaluator.fill(XS, YS, ZS, torch.empty(len(ZS) + 1, len(YS), len(XS)), 1.0, 0.0)


@pytest.fixture
def triton_decode(monkeypatch):
    """srnvtk.decode takes the Triton kernels for models on the CPU (as it does for CUDA ones)."""
    monkeypatch.setattr(decode_module, "_gpu_evaluator", lambda model, dtype: gpu.lattice_evaluator(model, dtype))


@pytest.mark.parametrize("arch", ["fvsrn", "neurcomp"])
def test_strides_extents_and_pieces_match_the_full_grid(triton_decode, arch):
    if arch == "fvsrn":
        model = random_fvsrn()
    else:
        torch.manual_seed(4)
        model = build_model(NeurcompConfig(width=16, blocks=2), SOURCE).eval()
    assert evaluation_path(model) == "Triton kernel"
    srn = SRNFile.of_model(model, SOURCE, (0.0, 1.0))
    full = decode(srn, device="cpu")
    outputs = {
        "stride": (strided_geometry(SOURCE, (3, 2, 4)), full[::4, ::2, ::3]),
        "extent": (strided_geometry(SOURCE, (1, 1, 1), (2, 7, 1, 4, 3, 4)), full[3:5, 1:5, 2:8]),
    }
    for output, expected in outputs.values():
        assert_same_voxels(decode(srn, output, device="cpu"), expected)
    pieces = [decode(srn, strided_geometry(SOURCE, (1, 1, 1), (0, 8, 0, 6, k0, k1)), device="cpu", batch_points=20)
              for k0, k1 in ((0, 1), (2, 4))]  # slabs of a few rows
    assert_same_voxels(np.concatenate(pieces), full)


def assert_same_voxels(values: np.ndarray, expected: np.ndarray) -> None:
    """Equal up to the interpreter's matrix products, whose rounding depends on a row's place in the block
    (numpy's BLAS); a GPU's are exact (test_gpu_cuda.py)."""
    assert values.shape == expected.shape
    np.testing.assert_allclose(values, expected, rtol=0, atol=1e-6 * np.abs(expected).max())


@pytest.mark.parametrize("dtype", ["uint8", "int16", "uint16", "int8", "float32", "float64"])
def test_the_output_dtype_is_written_by_the_kernel_like_the_cpu_path_would(triton_decode, monkeypatch, dtype):
    model = random_fvsrn(0.05)
    value_range = {"int8": (-100.0, 100.0), "int16": (-3000.0, 20000.0)}.get(dtype, (3.0, 250.0))
    direct = gpu.lattice_evaluator(model).denormalized(XS, YS, ZS, value_range, dtype)
    assert (direct is None) == (dtype in ("uint16", "float64"))  # these take the float64 path of decode
    values = decode(SRNFile.of_model(model, SOURCE, value_range, dtype), device="cpu")
    assert values.dtype == np.dtype(dtype)
    monkeypatch.setattr(decode_module, "_gpu_evaluator", lambda model, dtype: None)
    reference = decode(SRNFile.of_model(model, SOURCE, value_range, dtype), device="cpu")
    difference = np.abs(values.astype(np.float64) - reference)
    if dtype.startswith(("int", "uint")):  # rounded to the same code but where a value sits on a half
        assert difference.max() <= 1 and (difference > 0).mean() < 0.05
        info = np.iinfo(dtype)
        assert values.min() >= info.min and values.max() <= info.max
    else:
        assert difference.max() <= TOLERANCE * np.abs(reference).max()


def test_integer_outputs_are_clipped_to_their_type(triton_decode):
    model = random_fvsrn()  # values of several units: far outside [0, 1]
    values = decode(SRNFile.of_model(model, SOURCE, (0.0, 255.0), "uint8"), device="cpu")
    assert values.min() == 0 and values.max() == 255


def test_triton_can_be_switched_off(monkeypatch):
    monkeypatch.setenv("SRNVTK_TRITON", "0")
    assert gpu.unavailable_reason() == "SRNVTK_TRITON=0"
    assert gpu.lattice_evaluator(random_fvsrn()) is None


def test_models_on_the_cpu_keep_the_cpu_paths_in_decode():
    assert evaluation_path(random_fvsrn()) in ("fused C kernel", "torch lattice")
