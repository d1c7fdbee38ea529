"""fV-SRN with a wavelet grid: settings, the model, training with every pruning method, storage and round trips,
and the ParaView XML's wavelet properties."""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np
import pytest
import torch
from srn_editing import edit, stored_tensors

from srnvtk.config import FVSRNConfig, PruningConfig, TrainConfig, from_json, to_json
from srnvtk.datasets import default_geometry, default_volume_values
from srnvtk.decode import decode
from srnvtk.encoder import compress, config_for_ratio, estimated_file_bytes
from srnvtk.errors import FileFormatError, SettingsError
from srnvtk.fileformat import SRNFile, read_srn
from srnvtk.lattice import LatticeFVSRN
from srnvtk.metrics import psnr
from srnvtk.models import FVSRN, WaveletFVSRN, build_model
from srnvtk.pruning import attach_masks
from srnvtk.quantize import GRID, GRID_KEEP, GRID_QUANT, dequantize_grid, quantize_grid, storage_tensors
from srnvtk.train import train
from srnvtk.volume import Volume
from srnvtk.wavelet import WaveletTransform3D, level_groups, wavelet_names

SHAPE = (14, 12, 10)  # x, y, z point counts
PLAIN = FVSRNConfig(grid_channels=4, grid_resolution=8, mlp_width=16, mlp_layers=2, fourier_features=2)
WAVELET = dataclasses.replace(PLAIN, wavelet="db2")
TRAIN = TrainConfig(steps=45, batch_size=2048, seed=0, device="cpu")
METHODS = ("none", "smallify", "variational", "binary")
# Regularisers and mask rates that prune part of the coefficients within a few dozen steps (stronger ones
# prune all of them: coefficients start tiny, so at first only the penalty pulls on the masks).
PRUNING = {
    "none": {},
    "smallify": {"l1_weight": 0.1, "sign_momentum": 0.15, "mask_learning_rate": 0.1},
    "variational": {"kl_weight": 0.3, "kl_ramp_fraction": 0.0, "mask_learning_rate": 0.1},
    "binary": {"l1_weight": 0.003, "mask_learning_rate": 0.1},
}
XML = Path(__file__).resolve().parents[1] / "xml" / "srnvtk.xml"


def pruning(method: str, **change) -> PruningConfig:
    return PruningConfig(method=method, **PRUNING[method], **change)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def volume() -> Volume:
    return Volume(default_volume_values(SHAPE), default_geometry(SHAPE), "density")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, volume):
    """compress() of the wavelet model with a file, once per pruning method; computed on first use."""
    folder = tmp_path_factory.mktemp("wavelet")
    cache: dict = {}

    def get(method: str) -> dict:
        if method not in cache:
            path = folder / f"{method}.srn"
            settings = pruning(method)
            cache[method] = {"result": compress(volume, model_config=WAVELET, train_config=TRAIN, path=path,
                                                pruning=settings), "path": path,
                             "pruning": settings}
        return cache[method]

    return get


# ---------------------------------------------------------------------------------------------
# Settings


def test_wavelet_names_are_normalised() -> None:
    assert FVSRNConfig().wavelet is None and FVSRNConfig().wavelet_levels is None
    for plain in (None, "none", "None", " NONE ", ""):
        assert FVSRNConfig(wavelet=plain).wavelet is None
    assert FVSRNConfig(wavelet=" DB2 ").wavelet == "db2"
    assert FVSRNConfig(wavelet="bior2.2", wavelet_levels=3).wavelet_levels == 3
    config = FVSRNConfig(wavelet="haar", wavelet_levels=2)
    assert from_json(FVSRNConfig, to_json(config)) == config


def test_unknown_wavelet_name_lists_the_valid_names() -> None:
    with pytest.raises(SettingsError) as info:
        FVSRNConfig(wavelet="db99")
    message = str(info.value)
    for part in ("unknown wavelet 'db99'", "haar", "db1..db38", "sym2..sym20", "coif1..coif17", "bior1.1..bior6.8",
                 "rbio1.1..rbio6.8", "wavelet_names()"):
        assert part in message
    with pytest.raises(SettingsError, match="valid names"):
        FVSRNConfig(wavelet="morl")  # a continuous wavelet
    with pytest.raises(SettingsError, match="does not reconstruct perfectly"):
        FVSRNConfig(wavelet="dmey")
    with pytest.raises(SettingsError, match="wavelet must be a wavelet name"):
        FVSRNConfig(wavelet=2)


@pytest.mark.parametrize("levels", [0, -1, 17, 2.5, True, "3"])
def test_bad_wavelet_levels_are_rejected(levels) -> None:
    with pytest.raises(SettingsError, match=r"wavelet_levels must be an integer in \[1, 16\]"):
        FVSRNConfig(wavelet="haar", wavelet_levels=levels)


def test_levels_too_many_for_the_grid_fail_when_the_model_is_built() -> None:
    config = dataclasses.replace(WAVELET, wavelet_levels=5)  # the grid is 6 x 7 x 8: at most 3 levels
    with pytest.raises(SettingsError, match=r"too many for a grid of shape \(z, y, x\) = \(6, 7, 8\)"):
        build_model(config, default_geometry(SHAPE))


# ---------------------------------------------------------------------------------------------
# The model


def test_coefficients_replace_the_grid_one_for_one() -> None:
    geometry = default_geometry(SHAPE)
    torch.manual_seed(0)
    plain = build_model(PLAIN, geometry)
    torch.manual_seed(0)  # the same MLP
    wavelet = build_model(WAVELET, geometry)
    assert type(plain) is FVSRN and type(wavelet) is WaveletFVSRN
    assert wavelet.coefficients.shape == plain.grid.shape  # non-expansive: one coefficient per grid value
    assert "coefficients" in wavelet.state_dict() and "grid" not in wavelet.state_dict()
    assert wavelet.structure() == {**plain.structure(), "wavelet_levels": [1, 1, 1]}
    # Initialised as the DWT of the plain model's initial grid: the same function to start from.
    torch.testing.assert_close(wavelet.grid, plain.grid.detach(), rtol=0, atol=1e-7)
    positions = torch.rand(64, 3) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(wavelet(positions), plain(positions), rtol=0, atol=1e-6)


def test_training_forward_runs_the_inverse_dwt_on_masked_coefficients() -> None:
    model = build_model(dataclasses.replace(PLAIN, wavelet="haar"), default_geometry(SHAPE))
    attach_masks(model, PruningConfig(method="binary"))
    with torch.no_grad():
        model.grid_mask.logits.fill_(-5.0)  # every coefficient masked: the grid is zero
        model.grid_mask.logits[0, 0, 0, 0] = 5.0  # but the coarsest approximation coefficient
    grid = model.latent_grid()
    assert torch.count_nonzero(grid[0]) > 8  # one coefficient per channel, spread over the grid
    expected = model.transform.inverse(model.coefficients * (model.grid_mask.logits > 0))
    torch.testing.assert_close(grid, expected)
    model(torch.rand(32, 3) * 2 - 1).square().sum().backward()
    assert model.coefficients.grad.abs().sum() > 0 and model.grid_mask.logits.grad.abs().sum() > 0


def test_inference_grid_is_computed_once_until_the_coefficients_change(monkeypatch) -> None:
    model = build_model(WAVELET, default_geometry(SHAPE)).eval()
    calls = []
    inverse = model.transform.inverse
    monkeypatch.setattr(model.transform, "inverse", lambda c: calls.append(1) or inverse(c))
    geometry = default_geometry(SHAPE)
    first = decode(SRNFile.of_model(model, geometry, (0.0, 1.0), "float32"), device="cpu")
    decode(SRNFile.of_model(model, geometry, (0.0, 1.0), "float32"), device="cpu")
    with torch.no_grad():
        model(torch.rand(10, 3))
    assert len(calls) == 1
    assert isinstance(LatticeFVSRN(model), LatticeFVSRN)  # the fast lattice path takes the wavelet model
    voxels = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0], [-1.0, 1.0, 1.0]])  # (x, y, z) corners
    with torch.no_grad():
        pointwise = model(voxels).numpy()
    np.testing.assert_allclose(pointwise, [first[0, 0, 0], first[-1, -1, -1], first[-1, -1, 0]], atol=1e-5)
    with torch.no_grad():
        model.coefficients.mul_(2.0)  # in place, as an optimiser step or loading a state dict does
    second = decode(SRNFile.of_model(model, geometry, (0.0, 1.0), "float32"), device="cpu")
    assert len(calls) == 2 and not np.array_equal(first, second)


# ---------------------------------------------------------------------------------------------
# Training with every pruning method, storage and round trips


@pytest.mark.parametrize("method", METHODS)
def test_wavelet_model_trains(runs, volume, method) -> None:
    result = runs(method)["result"]
    geometry = volume.geometry
    untrained = decode(SRNFile.of_model(build_model(WAVELET, geometry), geometry, (0.0, 255.0)), device="cpu")
    before = psnr(volume.values, untrained, 255.0)
    assert result.stats["psnr"] > before + 5.0, (before, result.stats["psnr"])
    assert list(result.pruned_fractions)[0] == "coefficients"


@pytest.mark.parametrize("method", METHODS[1:])
def test_masks_prune_coefficients_and_files_shrink(runs, method) -> None:
    pruned, unpruned = runs(method), runs("none")
    fraction = pruned["result"].pruned_fractions["coefficients"]
    assert 0.0 < fraction < 1.0
    assert pruned["result"].file_bytes < unpruned["result"].file_bytes
    model = read_srn(pruned["path"]).model
    keep = np.broadcast_to(model.grid_keep.numpy(), model.coefficients.shape)
    assert np.all(model.coefficients.detach().numpy()[~keep] == 0)
    tensors = stored_tensors(pruned["path"])
    assert tensors[GRID].shape == (int(keep.sum()),)  # only the surviving coefficients
    assert tensors[GRID_KEEP].dtype == np.uint8


@pytest.mark.parametrize("method", METHODS)
def test_file_round_trip_is_exact(runs, method) -> None:
    run = runs(method)
    srn = read_srn(run["path"])
    assert srn.model_config == WAVELET and srn.pruning == run["pruning"]
    assert isinstance(srn.model, WaveletFVSRN) and srn.model.transform.levels == (1, 1, 1)
    again = decode(srn, device="cpu")
    assert np.array_equal(again, run["result"].reconstruction)
    assert srn.stats["pruned_fraction"] == pytest.approx(run["result"].stats["pruned_fraction"])


@pytest.mark.parametrize("method", METHODS)
def test_estimate_bounds_wavelet_files(runs, volume, method) -> None:
    run = runs(method)
    assert run["result"].file_bytes <= estimated_file_bytes(WAVELET, volume.geometry, run["pruning"])


def test_position_channel_masks_on_coefficients(volume, tmp_path) -> None:
    settings = pruning("binary", granularity="position_channel")
    result = compress(volume, model_config=WAVELET, train_config=TRAIN, path=tmp_path / "c.srn", pruning=settings)
    model = read_srn(tmp_path / "c.srn").model
    assert model.grid_keep.shape == model.coefficients.shape
    assert 0 < result.pruned_fractions["coefficients"] < 1


def test_coefficients_are_quantized_per_level(runs) -> None:
    model = read_srn(runs("none")["path"]).model
    stored = storage_tensors(model)
    assert stored.arrays[GRID_QUANT].shape == (2, WAVELET.grid_channels, 2)  # approximation, level-1 details
    assert stored.arrays[GRID].shape == tuple(model.coefficients.shape)


def test_quantization_error_is_close_to_that_of_quantizing_the_grid() -> None:
    """Codes of a smooth grid's coefficients, scaled per level, reconstruct it about as well as codes of the grid
    itself; one scale for all the coefficients of a channel would not."""
    z, y, x = torch.meshgrid(*(torch.linspace(0, 1, n, dtype=torch.float64) for n in (12, 16, 20)), indexing="ij")
    grid = torch.stack([torch.sin(3 * x + k) * torch.cos(2 * y - k) + 0.3 * z * k for k in range(4)])
    grid += 0.01 * torch.randn(grid.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))

    def rmse(restored: torch.Tensor | np.ndarray) -> float:
        return float(np.sqrt(np.mean((np.asarray(restored) - grid.numpy()) ** 2)))

    direct = rmse(dequantize_grid(*quantize_grid(grid.numpy())))
    for name in ("haar", "db2", "bior2.2"):
        transform = WaveletTransform3D(grid.shape[1:], name)
        groups = [[band.slices for band in group] for group in level_groups(transform.subbands())]
        coefficients = transform(grid).numpy()

        def restored(with_groups: list | None, coefficients=coefficients, transform=transform) -> torch.Tensor:
            codes, scale, offset = quantize_grid(coefficients, groups=with_groups)
            return transform.inverse(torch.from_numpy(dequantize_grid(codes, scale, offset, with_groups)).double())

        assert rmse(restored(groups)) < 2.0 * direct, name
        assert rmse(restored(None)) > 3.0 * direct, name


def test_plain_files_keep_one_scale_per_channel(volume, tmp_path) -> None:
    model = train(volume, PLAIN, TRAIN).model
    assert storage_tensors(model).arrays[GRID_QUANT].shape == (2, PLAIN.grid_channels)


def copy_of(path: Path, tmp_path: Path) -> Path:
    bad = tmp_path / "bad.srn"
    bad.write_bytes(path.read_bytes())
    return bad


def test_stored_levels_must_match(runs, tmp_path) -> None:

    bad = copy_of(runs("none")["path"], tmp_path)
    edit(bad, header=lambda h: h["structure"].__setitem__("wavelet_levels", [1, 1, 2]))
    with pytest.raises(FileFormatError, match=r"wavelet levels \(1, 1, 2\) were stored"):
        read_srn(bad)
    edit(bad, header=lambda h: h["structure"].pop("wavelet_levels") and None)
    with pytest.raises(FileFormatError, match="does not fit the settings"):
        read_srn(bad)


def test_level_scales_must_match(runs, tmp_path) -> None:
    path = runs("binary")["path"]
    bad = copy_of(path, tmp_path)
    edit(bad, tensors=lambda t: t.__setitem__(GRID_QUANT, t[GRID_QUANT][:, :, :-1]))
    with pytest.raises(FileFormatError, match="the tensor grid_quant is stored as"):
        read_srn(bad)
    bad = copy_of(path, tmp_path)
    edit(bad, tensors=lambda t: t.__setitem__(GRID_QUANT, t[GRID_QUANT][:, :, 0]))  # a plain grid's layout
    with pytest.raises(FileFormatError, match="the tensor grid_quant is stored as"):
        read_srn(bad)


def test_ratio_sizing_counts_the_level_scales() -> None:
    geometry = default_geometry((64, 64, 64))
    haar = dataclasses.replace(PLAIN, grid_resolution=16, wavelet="haar")  # 4 levels
    plain = dataclasses.replace(haar, wavelet=None)
    extra = estimated_file_bytes(haar, geometry) - estimated_file_bytes(plain, geometry)
    assert extra == 2 * 4 * PLAIN.grid_channels * 4  # float32 scale and offset per channel and level, 1 + 4
    sized = config_for_ratio(20.0, geometry, haar)
    assert sized.wavelet == "haar" and estimated_file_bytes(sized, geometry) <= 4 * 64**3 / 20.0
    # Explicit levels: grids too small for them are passed over, not an error.
    many = config_for_ratio(40.0, geometry, dataclasses.replace(haar, grid_channels=1, wavelet_levels=4))
    assert many.grid_resolution >= 9 and build_model(many, geometry).transform.levels == (4, 4, 4)


# ---------------------------------------------------------------------------------------------
# The ParaView XML (the CLI and VTK settings are tested in test_cli.py and test_vtkalgorithms.py)


def xml_property(name: str) -> ElementTree.Element:
    root = ElementTree.parse(XML).getroot()
    (element,) = root.findall(f".//SourceProxy[@name='SRNEncoder']/*[@name='{name}']")
    return element


def test_xml_offers_every_wavelet_with_the_config_defaults() -> None:
    wavelet = xml_property("Wavelet")
    assert wavelet.get("command") == "SetWavelet" and wavelet.get("default_values") == "none"
    names = [s.get("value") for s in wavelet.findall("StringListDomain/String")]
    assert names[0] == "none" and sorted(names[1:]) == sorted(wavelet_names())
    levels = xml_property("WaveletLevels")
    assert levels.get("command") == "SetWaveletLevels" and levels.get("default_values") == "0"  # 0: None
    assert FVSRNConfig().wavelet is None and FVSRNConfig().wavelet_levels is None
    group = ElementTree.parse(XML).getroot().find(".//SourceProxy[@name='SRNEncoder']/PropertyGroup[@label='Model']")
    assert {"Wavelet", "WaveletLevels"} <= {p.get("name") for p in group.findall("Property")}
