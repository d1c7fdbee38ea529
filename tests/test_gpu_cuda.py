"""The compiled Triton decoders and the graphed training step on a real GPU (skipped without CUDA).

Run by benchmarks/gpu_check.sh on the device machine. Tolerances: fp32 with the polynomial or Triton's sine within
1e-5 of the largest value of the CPU kernels' result (rounding only); fp32 with the GPU's approximate sines within
1e-4 (their error is ~1e-6 per activation, grown through the layers); fp16 products within the precision='auto'
contract (1e-3 of the value range) where the probe accepts them. A voxel's value must not depend on the tile it is
computed in: strides, extents and pieces are exact slices of the full grid. The graphed training step must train
like the eager loop: the same first loss, a final loss within training noise.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from srnvtk import decode as decode_module
from srnvtk import gpu
from srnvtk.config import FVSRNConfig, NeurcompConfig, TrainConfig
from srnvtk.datasets import default_geometry, default_volume_values
from srnvtk.decode import decode, evaluation_path, strided_geometry
from srnvtk.fileformat import SRNFile
from srnvtk.gpu.graphed_step import WARMUP
from srnvtk.lattice import LatticeFVSRN
from srnvtk.models import build_model
from srnvtk.models.layers import aspect_of
from srnvtk.models.neurcomp import Neurcomp
from srnvtk.neurcomp_eval import FoldedNeurcomp
from srnvtk.train import train
from srnvtk.volume import Geometry, Volume

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

SOURCE = Geometry((0, 40, 0, 30, 0, 20), (0.5, -1.0, 2.0), (0.1, 0.2, 0.15))
CUDA = torch.device("cuda")
XS, YS, ZS = torch.linspace(-1.1, 1.0, 133), torch.linspace(-1, 1.2, 19), torch.tensor([-1.0, -0.33, 0.0, 0.9, 1.0])


@pytest.fixture(scope="module", autouse=True)
def compiled():
    if gpu.interpreting():
        pytest.skip("Triton runs in its interpreter in this process (TRITON_INTERPRET=1): run this module alone")
    if gpu.load_kernels() is None:
        pytest.skip(f"triton unavailable: {gpu.unavailable_reason()}")


def random_fvsrn(weight_scale: float = 0.3, **settings) -> torch.nn.Module:
    torch.manual_seed(3)
    model = build_model(FVSRNConfig(**{"grid_resolution": 9, **settings}), SOURCE)
    with torch.no_grad():
        model.latent.normal_()
        for p in model.mlp.parameters():
            p.normal_(0.0, weight_scale)
    return model.eval()


def cpu_reference(model: torch.nn.Module) -> torch.Tensor:
    model = model.cpu()
    with torch.inference_mode():
        if isinstance(model, Neurcomp):
            zz, yy, xx = torch.meshgrid(ZS, YS, XS, indexing="ij")
            points = torch.stack([xx.reshape(-1), yy.reshape(-1), zz.reshape(-1)], 1)
            return FoldedNeurcomp(model)(points).reshape(len(ZS), len(YS), len(XS))
        return LatticeFVSRN(model).evaluate(XS, YS, ZS, batch_points=1 << 14)


def on_gpu(model: torch.nn.Module, dtype: torch.dtype = torch.float32, sin: str = "poly") -> torch.Tensor:
    evaluator = gpu.lattice_evaluator(model.to(CUDA), dtype, sin)
    assert evaluator is not None
    return evaluator(XS.to(CUDA), YS.to(CUDA), ZS.to(CUDA)).cpu()


def assert_agrees(values: torch.Tensor, reference: torch.Tensor, tolerance: float) -> None:
    scale = reference.abs().max().item()
    assert scale > 0.05 and torch.isfinite(values).all()
    assert (values - reference).abs().max().item() <= tolerance * scale


@pytest.mark.parametrize("settings", [{}, {"mlp_width": 13, "mlp_layers": 3}, {"fourier_features": 0},
                                      {"grid_channels": 20, "mlp_width": 40, "mlp_layers": 2}])
def test_fvsrn_kernel_agrees_with_the_cpu_kernel(settings):
    model = random_fvsrn(**settings)
    reference = cpu_reference(model)
    assert_agrees(on_gpu(model), reference, 1e-5)
    if not settings:  # every sine once (each variant is a compilation of several seconds)
        assert_agrees(on_gpu(model, sin="exact"), reference, 1e-5)
        assert_agrees(on_gpu(model, sin="approx"), reference, 1e-4)


@pytest.mark.parametrize("residual", [True, False])
def test_neurcomp_kernel_agrees_with_the_cpu(residual):
    torch.manual_seed(2)
    model = build_model(NeurcompConfig(width=24, blocks=3, residual=residual), SOURCE).eval()
    reference = cpu_reference(model)
    assert_agrees(on_gpu(model), reference, 1e-5)
    if residual:
        assert_agrees(on_gpu(model, sin="approx"), reference, 1e-4)
    pruned = Neurcomp(NeurcompConfig(width=24, blocks=2, residual=residual), aspect_of(SOURCE),
                      [24, 17, 24, 5, 24] if residual else [24, 17, 20, 5, 18]).eval()
    assert_agrees(on_gpu(pruned), cpu_reference(pruned), 1e-5)


@pytest.mark.parametrize("arch", ["fvsrn", "neurcomp"])
def test_strides_extents_and_pieces_are_exact_slices_of_the_full_grid(arch):
    if arch == "fvsrn":
        model = random_fvsrn()
    else:
        torch.manual_seed(4)
        model = build_model(NeurcompConfig(width=32, blocks=2), SOURCE).eval()
    model.to(CUDA)
    assert evaluation_path(model) == "Triton kernel"
    srn = SRNFile.of_model(model, SOURCE, (0.0, 1.0))
    for precision in ("fp32", "fp16"):
        full = decode(srn, device="cuda", precision=precision)
        strided = decode(srn, strided_geometry(SOURCE, (3, 2, 4)), device="cuda", precision=precision)
        np.testing.assert_array_equal(strided, full[::4, ::2, ::3])
        extent = decode(srn, strided_geometry(SOURCE, (1, 1, 1), (2, 37, 1, 24, 3, 14)), device="cuda",
                        precision=precision)
        np.testing.assert_array_equal(extent, full[3:15, 1:25, 2:38])
        pieces = [decode(srn, strided_geometry(SOURCE, (1, 1, 1), (0, 40, 0, 30, k0, k1)), device="cuda",
                         precision=precision, batch_points=500) for k0, k1 in ((0, 7), (8, 20))]
        np.testing.assert_array_equal(np.concatenate(pieces), full)


@pytest.mark.parametrize("arch", ["fvsrn", "neurcomp"])
def test_auto_precision_keeps_its_contract_with_the_kernels(arch):
    torch.manual_seed(0)
    config = FVSRNConfig(grid_resolution=8) if arch == "fvsrn" else NeurcompConfig(width=32, blocks=3)
    model = build_model(config, SOURCE).eval().to(CUDA)  # as initialised
    fp32 = decode(SRNFile.of_model(model, SOURCE, (0.0, 1.0), "float32"), device="cuda", precision="fp32")
    auto = decode(SRNFile.of_model(model, SOURCE, (0.0, 1.0), "float32"), device="cuda", precision="auto")
    error = decode_module.half_precision_error(model, CUDA)
    assert error > 0  # the probe ran the fp16 kernel
    assert np.abs(auto - fp32).max() < decode_module.HALF_TOLERANCE
    print(f"{arch}: fp16 probe error {error:.2e} of the range")


def test_outputs_in_their_dtype_match_the_cpu_decode_and_every_voxel_is_written():
    model = random_fvsrn(0.05)
    cpu = decode(SRNFile.of_model(model, SOURCE, (3.0, 250.0), "uint8"), device="cpu")
    cuda = decode(SRNFile.of_model(model.to(CUDA), SOURCE, (3.0, 250.0), "uint8"), device="cuda")
    difference = np.abs(cuda.astype(np.int16) - cpu)
    assert difference.max() <= 1 and (difference > 0).mean() < 0.01
    evaluator = gpu.lattice_evaluator(model)
    for shape in [(67, 33, 129), (3, 1, 1000), (2, 1000, 3)]:
        out = torch.full(shape, float("nan"), device=CUDA)
        evaluator.fill(*(torch.linspace(-1, 1, n, device=CUDA) for n in reversed(shape)), out, 1.0, 0.0)
        assert torch.isfinite(out).all()


def test_the_graphed_step_is_captured_and_trains_like_the_eager_loop(monkeypatch):
    shape = (48, 40, 32)
    volume = Volume(default_volume_values(shape), default_geometry(shape), "density")
    config = TrainConfig(steps=400, batch_size=4096, device="cuda", seed=0)
    model_config = FVSRNConfig(grid_channels=8, grid_resolution=12, mlp_width=32, mlp_layers=2)
    runs = {}
    for graphs in ("1", "0"):
        monkeypatch.setenv("SRNVTK_CUDA_GRAPHS", graphs)
        losses: list[float] = []
        result = train(volume, model_config, dataclasses.replace(config),
                       progress=lambda _f, m, losses=losses: losses.append(float(m.split()[-1])))
        runs[graphs] = (losses, result)
    (graphed, graphed_result), (eager, eager_result) = runs["1"], runs["0"]
    assert graphed_result.steps == eager_result.steps == 400
    assert len(graphed) == len(eager) == 200
    assert graphed[0] == pytest.approx(eager[0], rel=1e-4)  # the same batches, the same start
    assert graphed[-1] < 0.2 * graphed[0] and eager[-1] < 0.2 * eager[0]
    late_graphed, late_eager = np.mean(graphed[-20:]), np.mean(eager[-20:])
    assert 0.7 < late_graphed / late_eager < 1.4  # within training noise
    print(f"mean of the last 20 reported losses: graphed {late_graphed:.3e}, eager {late_eager:.3e}")


def test_a_graphed_step_replays_after_its_warm_up():
    from srnvtk.gpu.graphed_step import GraphedStep

    torch.manual_seed(0)
    model = build_model(FVSRNConfig(grid_channels=4, grid_resolution=8, mlp_width=16, mlp_layers=2),
                        SOURCE).to(CUDA)
    targets = torch.rand(41 * 31 * 21, device=CUDA)
    step = GraphedStep(model, [{"params": list(model.parameters()), "base_lr": 1e-2}], 1e-2, targets,
                       SOURCE.shape_zyx, 1024, torch.Generator(device=CUDA).manual_seed(0))
    before = model.grid.detach().clone()
    losses = [float(step(1.0)) for _ in range(WARMUP + 3)]
    assert step.graph is not None and step.capture
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    assert not torch.equal(model.grid.detach(), before)
