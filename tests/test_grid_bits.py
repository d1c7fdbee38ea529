"""Latent codes of fewer than 8 bits (FVSRNConfig.grid_bits): the rounding, quantisation-aware training, the files
(format version 7, written only for them) and rate control with them."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from srnvtk.config import FVSRNConfig, TrainConfig
from srnvtk.container import Container, Encoded, pack
from srnvtk.datasets import default_geometry, default_volume_values
from srnvtk.decode import decode
from srnvtk.encoder import compress
from srnvtk.errors import FileFormatError, SettingsError
from srnvtk.fileformat import FORMAT_VERSION, GRID_BITS_VERSION, read_srn
from srnvtk.models import build_model
from srnvtk.quantize import dequantize_grid, dequantize_kept, fake_quantize, quantize_grid, storage_tensors
from srnvtk.ratecontrol import compress_to_ratio
from srnvtk.volume import Volume

SHAPE = (14, 12, 10)
MODEL = FVSRNConfig(grid_channels=4, grid_resolution=8, mlp_width=16, mlp_layers=2, fourier_features=2)
TRAIN = TrainConfig(steps=60, batch_size=2048, learning_rate=1e-2, seed=0, device="cpu")


@pytest.fixture(scope="module")
def volume() -> Volume:
    return Volume(default_volume_values(SHAPE), default_geometry(SHAPE), "density")


@pytest.mark.parametrize("bits", [8, 5, 2])
def test_codes_use_only_their_bits_and_fake_quantize_matches_the_stored_grid(bits) -> None:
    grid = torch.randn(3, 4, 5, 6, generator=torch.Generator().manual_seed(1))
    codes, scale, offset = quantize_grid(grid.numpy(), bits=bits)
    assert codes.dtype == np.uint8 and codes.max() == 2**bits - 1 and codes.min() == 0
    stored = dequantize_grid(codes, scale, offset)
    np.testing.assert_allclose(fake_quantize(grid, bits).numpy(), stored, rtol=0, atol=1e-6)
    levels = {len(np.unique(stored[c])) for c in range(3)}
    assert max(levels) <= 2**bits


def test_fake_quantize_with_a_keep_mask_and_groups() -> None:
    grid = torch.randn(2, 4, 4, 4, generator=torch.Generator().manual_seed(2))
    keep = torch.rand(1, 4, 4, 4, generator=torch.Generator().manual_seed(3)) > 0.4
    groups = [[(slice(0, 2), slice(0, 2), slice(0, 2))],
              [(slice(2, 4), slice(None), slice(None)), (slice(0, 2), slice(2, 4), slice(None)),
               (slice(0, 2), slice(0, 2), slice(2, 4))]]
    grid = grid * keep
    codes, scale, offset = quantize_grid(grid.numpy(), keep.numpy(), groups, bits=4)
    stored = dequantize_kept(codes, scale, offset, np.broadcast_to(keep.numpy(), grid.shape), groups)
    np.testing.assert_allclose(fake_quantize(grid, 4, keep, groups).numpy(), stored, rtol=0, atol=1e-6)


def test_gradients_pass_straight_through_the_rounding() -> None:
    grid = torch.randn(2, 3, 3, 3, requires_grad=True)
    (fake_quantize(grid, 3) * torch.arange(54.0).reshape(2, 3, 3, 3)).sum().backward()
    assert torch.equal(grid.grad, torch.arange(54.0).reshape(2, 3, 3, 3))


def test_bits_outside_two_to_eight_are_refused() -> None:
    for bits in (1, 9):
        with pytest.raises(SettingsError, match="grid_bits"):
            FVSRNConfig(grid_bits=bits)


@pytest.fixture(scope="module")
def five_bit(tmp_path_factory, volume) -> dict:
    path = tmp_path_factory.mktemp("bits") / "five.srn"
    config = dataclasses.replace(MODEL, grid_bits=5)
    result = compress(volume, model_config=config, train_config=TRAIN, path=path)
    return {"path": path, "result": result}


def test_a_five_bit_file_is_version_7_and_decodes_as_the_encoder_measured(five_bit) -> None:
    container = Container.open(five_bit["path"])
    assert container.version == GRID_BITS_VERSION and container.header["model_config"]["grid_bits"] == 5
    srn = read_srn(five_bit["path"])
    assert srn.model_config.grid_bits == 5
    codes = container.read(container.header["tensors"]["grid"][0])
    assert max(codes) <= 31
    np.testing.assert_array_equal(decode(srn, device="cpu"), five_bit["result"].reconstruction)


def test_training_ends_aware_of_the_rounding(volume) -> None:
    """The fine-tune that fewer bits add to training reads the rounded grid: the trained grid is then already on
    (or next to) its codes' levels, and the model is left unrounded for whatever runs next."""
    from srnvtk.train import train

    config = dataclasses.replace(MODEL, grid_bits=3)
    result = train(volume, config, TRAIN)
    grid = result.model.grid.detach()
    assert not result.model._quantization_aware
    assert torch.equal(result.model.latent_grid(), grid)
    rounded = fake_quantize(grid, 3)
    assert not torch.equal(rounded, grid)  # training moves the float grid; only the file rounds it


def test_fewer_bits_make_a_smaller_file_of_the_same_grid(tmp_path, volume) -> None:
    sizes = {}
    for bits in (8, 4):
        path = tmp_path / f"b{bits}.srn"
        compress(volume, model_config=dataclasses.replace(MODEL, grid_bits=bits), train_config=TRAIN, path=path)
        sizes[bits] = read_srn(path).tensor_bytes["grid"]
    assert sizes[4] < 0.75 * sizes[8]


def test_an_8_bit_file_stays_version_5_without_the_setting(tmp_path, volume) -> None:
    path = tmp_path / "eight.srn"
    compress(volume, model_config=MODEL, train_config=TRAIN, path=path)
    container = Container.open(path)
    assert container.version == FORMAT_VERSION and "grid_bits" not in container.header["model_config"]


def rewritten(path, tmp_path, version=None, header_change=None, grid=None):
    container = Container.open(path)
    data = path.read_bytes()
    sections = [Encoded(data[s.offset:s.offset + s.length], s.codec, s.raw_length) for s in container.sections]
    header = container.header
    if header_change:
        header_change(header)
    if grid is not None:
        sections[header["tensors"]["grid"][0]] = Encoded(grid, 0, len(grid))
    out = tmp_path / "edited.srn"
    out.write_bytes(pack(version or container.version, header, sections))
    return out


def test_versions_must_fit_the_bits(tmp_path, five_bit) -> None:
    as_five = rewritten(five_bit["path"], tmp_path, version=FORMAT_VERSION)
    with pytest.raises(FileFormatError, match="format version 5 does not fit"):
        read_srn(as_five)

    def eight(header):
        header["model_config"]["grid_bits"] = 8

    with pytest.raises(FileFormatError, match="format version 7 does not fit"):
        read_srn(rewritten(five_bit["path"], tmp_path, header_change=eight))


def test_codes_beyond_the_bits_are_refused(tmp_path, five_bit) -> None:
    container = Container.open(five_bit["path"])
    codes = bytearray(container.read(container.header["tensors"]["grid"][0]))
    codes[3] = 32
    with pytest.raises(FileFormatError, match="codes reach 32, beyond the 31 of 5 bits"):
        read_srn(rewritten(five_bit["path"], tmp_path, grid=bytes(codes)))


def test_rate_control_fills_the_budget_with_fewer_bits(tmp_path) -> None:
    """At a target ratio fewer bits buy more grid entries, and the file still lands within the budget."""
    shape = (40, 36, 32)
    volume = Volume(default_volume_values(shape), default_geometry(shape), "density")
    budget = 4 * volume.values.size // 12
    codes = {}
    for bits in (8, 5):
        path = tmp_path / f"r{bits}.srn"
        compress_to_ratio(volume, 12.0, model_config=dataclasses.replace(MODEL, grid_bits=bits), train_config=TRAIN,
                          path=path)
        assert 0.85 * budget <= path.stat().st_size <= budget  # see test_ratecontrol's 15%
        codes[bits] = int(np.prod(Container.open(path).header["tensors"]["grid"][2]))
    assert codes[5] > 1.2 * codes[8]


def test_storage_of_an_untrained_model_uses_the_bits() -> None:
    model = build_model(dataclasses.replace(MODEL, grid_bits=6), default_geometry(SHAPE))
    assert storage_tensors(model).arrays["grid"].max() <= 63
