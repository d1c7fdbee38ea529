"""Neurcomp: structure, residual and plain forward passes, pruning by neuron, sizing for a ratio, the file."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from srnvtk.config import NeurcompConfig, PruningConfig, TrainConfig
from srnvtk.datasets import default_geometry, default_volume_values
from srnvtk.decode import decode
from srnvtk.encoder import FILE_OVERHEAD_BYTES, compress, config_for_ratio, estimated_file_bytes
from srnvtk.errors import SettingsError
from srnvtk.fileformat import SourceInfo, read_srn, write_srn
from srnvtk.masks import BinaryMask
from srnvtk.models import build_model
from srnvtk.models.layers import aspect_of
from srnvtk.models.neurcomp import Neurcomp, parameter_shapes, prunable_layers
from srnvtk.quantize import apply_storage_precision
from srnvtk.volume import Geometry, Volume

SHAPE = (13, 11, 9)  # x, y, z point counts
TINY = NeurcompConfig(width=12, blocks=2)
TRAIN = TrainConfig(steps=30, batch_size=2048, seed=0, device="cpu")



@pytest.fixture(scope="module")
def volume() -> Volume:
    return Volume(default_volume_values(SHAPE), default_geometry(SHAPE), "density")


def box(lengths=(1.0, 1.0, 1.0)) -> Geometry:
    return Geometry((0, 4, 0, 4, 0, 4), (0.0, 0.0, 0.0), tuple(length / 4 for length in lengths))


# ---------------------------------------------------------------------------------------------
# Structure and forward pass


@pytest.mark.parametrize("residual", [True, False])
def test_layers_and_parameter_count(residual) -> None:
    config = NeurcompConfig(width=10, blocks=3, residual=residual)
    model = build_model(config, box())
    assert isinstance(model, Neurcomp)
    assert model.widths == [10] * 7
    shapes = {name: tuple(p.shape) for name, p in model.named_parameters()}
    assert shapes == parameter_shapes(config, model.widths)
    assert shapes["layers.0.linear.weight"] == (10, 3) and shapes["output.weight"] == (1, 10)
    assert sum(p.numel() for p in model.parameters()) == 3 * 10 + 10 + 6 * (10 * 10 + 10) + 10 + 1


def test_prunable_layers_residual_versus_plain() -> None:
    """Residual blocks add to one stream: only their inner layers can shrink, about half of the plain net's."""
    assert prunable_layers(NeurcompConfig(blocks=3, residual=True)) == [1, 3, 5]
    assert prunable_layers(NeurcompConfig(blocks=3, residual=False)) == [0, 1, 2, 3, 4, 5, 6]


def test_siren_initialisation_bounds() -> None:
    model = build_model(NeurcompConfig(width=20, blocks=1, omega_0=30.0), box())
    first, hidden = model.layers[0].linear.weight.detach(), model.layers[1].linear.weight.detach()
    assert float(first.abs().max()) <= 1 / 3 and float(first.abs().max()) > 0.2
    assert float(hidden.abs().max()) <= math.sqrt(6 / 20) / 30


def test_residual_forward_follows_the_published_scalings() -> None:
    """Block b: y = s_out (x + sin(w0 L2(sin(w0 L1(s_in x))))), s_in = 0.5 but for the first block, s_out = 0.5
    only for the last."""
    torch.manual_seed(0)
    config = NeurcompConfig(width=6, blocks=3, omega_0=5.0)
    model = build_model(config, box((2.0, 1.0, 1.0)))
    positions = torch.rand(50, 3) * 2 - 1
    w0 = config.omega_0

    def sine(layer, x):
        return torch.sin(w0 * (x @ layer.linear.weight.t() + layer.linear.bias))

    x = sine(model.layers[0], positions * torch.tensor([1.0, 0.5, 0.5]))
    for b in range(3):
        s_in = 1.0 if b == 0 else 0.5
        s_out = 0.5 if b == 2 else 1.0
        x = s_out * (x + sine(model.layers[2 * b + 2], sine(model.layers[2 * b + 1], s_in * x)))
    expected = (x @ model.output.weight.t() + model.output.bias).squeeze(1)
    torch.testing.assert_close(model(positions), expected)


def test_plain_forward_is_a_chain_of_sine_layers() -> None:
    torch.manual_seed(0)
    model = build_model(NeurcompConfig(width=5, blocks=2, residual=False, omega_0=3.0), box())
    positions = torch.rand(20, 3) * 2 - 1
    x = positions
    for layer in model.layers:
        x = torch.sin(3.0 * layer.linear(x))
    torch.testing.assert_close(model(positions), model.output(x).squeeze(1))


def test_output_depends_on_the_aspect_ratio() -> None:
    torch.manual_seed(0)
    wide, cube = build_model(TINY, box((4.0, 1.0, 1.0))), build_model(TINY, box())
    cube.load_state_dict(wide.state_dict())
    positions = torch.rand(10, 3) * 2 - 1
    assert not torch.allclose(wide(positions), cube(positions))
    scaled = positions * torch.tensor([1.0, 0.25, 0.25])
    torch.testing.assert_close(wide(positions), cube(scaled))


# ---------------------------------------------------------------------------------------------
# Pruning by neuron


def masked_model(residual: bool, kept_every: int = 3) -> Neurcomp:
    """A random network with binary masks that keep every kept_every-th neuron of each prunable layer."""
    torch.manual_seed(0)
    model = build_model(NeurcompConfig(width=9, blocks=2, residual=residual), box())
    masks = []
    for (width,) in model.mask_shapes("position"):
        mask = BinaryMask((width,), threshold=0.5)
        with torch.no_grad():
            mask.logits.copy_(torch.tensor([3.0 if i % kept_every == 0 else -3.0 for i in range(width)]))
        masks.append(mask)
    model.attach_masks(masks)
    return model.eval()


@pytest.mark.parametrize("residual", [True, False])
def test_baking_removes_neurons_and_keeps_the_function(residual) -> None:
    model = masked_model(residual)
    positions = torch.rand(64, 3) * 2 - 1
    with torch.no_grad():
        before = model(positions)
        model.bake_masks()
        after = model(positions)
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-6)
    assert not model.masks()
    prunable = prunable_layers(model.config)
    assert [w for k, w in enumerate(model.widths) if k in prunable] == [3] * len(prunable)
    assert all(w == 9 for k, w in enumerate(model.widths) if k not in prunable)
    shapes = {name: tuple(p.shape) for name, p in model.named_parameters()}
    assert shapes == parameter_shapes(model.config, model.widths)


def test_baking_folds_smallify_factors_into_the_next_layer() -> None:
    from srnvtk.masks import SmallifyMask

    torch.manual_seed(1)
    model = build_model(NeurcompConfig(width=6, blocks=1, residual=False), box())
    masks = [SmallifyMask(shape, momentum=0.025, threshold=0.75) for shape in model.mask_shapes("position")]
    masks[1].alive[2] = False  # pruned by its sign statistics
    model.attach_masks(masks)
    model.eval()
    positions = torch.rand(32, 3) * 2 - 1
    with torch.no_grad():
        before = model(positions)
        model.bake_masks()
        torch.testing.assert_close(model(positions), before, rtol=1e-5, atol=1e-6)
    assert model.widths == [6, 5, 6]


def test_a_fully_pruned_layer_leaves_a_working_network() -> None:
    model = masked_model(residual=True, kept_every=100)  # keeps neuron 0 only
    with torch.no_grad():
        model.unit_masks[1].logits.fill_(-5.0)  # and nothing at all in the first block's inner layer
        model.bake_masks()
    assert model.widths[1] == 0
    assert torch.isfinite(model(torch.rand(8, 3))).all()


def test_widths_that_do_not_fit_are_rejected() -> None:
    with pytest.raises(ValueError, match="expected 5"):
        Neurcomp(TINY, torch.ones(3), widths=[12, 12, 12])
    with pytest.raises(ValueError, match="residual stream"):
        Neurcomp(TINY, torch.ones(3), widths=[12, 4, 11, 4, 12])
    with pytest.raises(ValueError, match="outside"):
        Neurcomp(TINY, torch.ones(3), widths=[12, 13, 12, 4, 12])


# ---------------------------------------------------------------------------------------------
# Settings and sizing


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"width": 0}, "width must be"),
        ({"blocks": 0}, "blocks must be"),
        ({"residual": "yes"}, "residual must be true or false"),
        ({"omega_0": 0.0}, "omega_0 must be"),
        ({"omega_0": float("nan")}, "omega_0 must be"),
    ],
)
def test_bad_settings_raise(change, fragment) -> None:
    with pytest.raises(SettingsError, match=fragment):
        NeurcompConfig(**change)


@pytest.mark.parametrize(("ratio", "shape"), [(20.0, (40, 40, 40)), (60.0, (96, 64, 48))])
def test_config_for_ratio_picks_the_largest_width_that_fits(tmp_path, ratio, shape) -> None:
    geometry = default_geometry(shape)
    base = NeurcompConfig(blocks=3)
    config = config_for_ratio(ratio, geometry, base)
    assert config.blocks == 3 and config.residual
    budget = 4 * geometry.num_points / ratio
    size = write_srn(tmp_path / "a.srn", config, apply_storage_precision(build_model(config, geometry)),
                     SourceInfo("v", "float32", geometry, (0.0, 1.0)), {})
    assert size <= estimated_file_bytes(config, geometry) <= budget
    assert estimated_file_bytes(config, geometry) - size < FILE_OVERHEAD_BYTES
    assert estimated_file_bytes(dataclasses.replace(config, width=config.width + 1), geometry) > budget


def test_config_for_ratio_rejects_impossible_ratios() -> None:
    with pytest.raises(SettingsError, match="too few for even the smallest model"):
        config_for_ratio(1000.0, default_geometry((16, 16, 16)), NeurcompConfig())


# ---------------------------------------------------------------------------------------------
# Training and the file


def test_default_learning_rates() -> None:
    from srnvtk.config import FVSRNConfig
    from srnvtk.models import DEFAULT_LEARNING_RATES, default_learning_rate

    assert default_learning_rate(FVSRNConfig()) == DEFAULT_LEARNING_RATES["fvsrn"]
    assert default_learning_rate(NeurcompConfig(width=48)) == DEFAULT_LEARNING_RATES["neurcomp"]
    assert default_learning_rate(NeurcompConfig(width=12)) == DEFAULT_LEARNING_RATES["neurcomp"]
    assert default_learning_rate(NeurcompConfig(width=96)) == pytest.approx(DEFAULT_LEARNING_RATES["neurcomp"] / 2)
    plain = default_learning_rate(NeurcompConfig(width=48, residual=False))
    assert plain == DEFAULT_LEARNING_RATES["neurcomp-plain"] < DEFAULT_LEARNING_RATES["neurcomp"]


@pytest.mark.parametrize("residual", [True, False])
def test_training_fits_the_volume(volume, residual) -> None:
    from srnvtk.sampling import voxel_positions
    from srnvtk.train import normalized_values, train

    steps = 300 if residual else 600  # a plain network trains at a lower rate (DEFAULT_LEARNING_RATES)
    result = train(volume, dataclasses.replace(TINY, residual=residual), dataclasses.replace(TRAIN, steps=steps))
    targets = normalized_values(volume, result.value_range)
    with torch.no_grad():
        predicted = result.model(voxel_positions(torch.arange(targets.numel()), volume.geometry.shape_zyx))
    assert float((predicted - targets).square().mean()) < 0.5 * float(targets.var())


@pytest.mark.parametrize("method", ["none", "binary"])
def test_file_round_trip_is_exact(tmp_path, volume, method) -> None:
    pruning = PruningConfig(method=method, l1_weight=50.0, mask_learning_rate=0.3)
    result = compress(volume, model_config=TINY, train_config=TRAIN, path=tmp_path / "n.srn", pruning=pruning)
    srn = read_srn(tmp_path / "n.srn")
    assert srn.model_config == TINY and srn.pruning == pruning
    assert isinstance(srn.model, Neurcomp)
    again = decode(srn, device="cpu")
    assert np.array_equal(again, result.reconstruction)
    shapes = {name: tuple(p.shape) for name, p in srn.model.named_parameters()}
    assert shapes == parameter_shapes(TINY, srn.model.widths)
    if method == "binary":
        assert min(srn.model.widths[k] for k in prunable_layers(TINY)) < TINY.width  # shrunk matrices


@pytest.mark.parametrize("residual", [True, False])
@pytest.mark.parametrize("clusters", [0, 16])
def test_inference_form_computes_the_same_function(residual, clusters) -> None:
    from srnvtk.neurcomp_eval import FoldedNeurcomp

    geometry = Geometry((0, 19, 0, 11, 0, 7), spacing=(1.0, 2.0, 0.5))  # unequal aspect: folded into layer 0
    model = build_model(NeurcompConfig(width=12, blocks=3, residual=residual, weight_clusters=clusters), geometry)
    if clusters:
        model.share_weights()
    positions = torch.rand((300, 3), generator=torch.Generator().manual_seed(0)) * 2 - 1
    folded = FoldedNeurcomp(model.eval())
    with torch.no_grad():
        expected = model(positions)
    torch.testing.assert_close(folded(positions), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(folded(positions[:7]), expected[:7], atol=1e-5, rtol=1e-5)  # buffers resize


def test_inference_form_of_a_pruned_network() -> None:
    from srnvtk.neurcomp_eval import FoldedNeurcomp

    geometry = Geometry((0, 9, 0, 9, 0, 9))
    model = Neurcomp(NeurcompConfig(width=10, blocks=2, residual=False), aspect_of(geometry), [10, 4, 7, 3, 10])
    positions = torch.rand((50, 3), generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(FoldedNeurcomp(model.eval())(positions), model(positions), atol=1e-5, rtol=1e-5)
