"""The architecture 'auto' (srnvtk.presets): a target ratio trains the preset measured best there; what the user
gave explicitly wins."""

from __future__ import annotations

import dataclasses
import math

import pytest

from srnvtk import presets
from srnvtk.config import EncodeConfig, EncoderSettings, FVSRNConfig, NeurcompConfig, PruningConfig, TrainConfig
from srnvtk.datasets import default_geometry, default_volume_values
from srnvtk.fileformat import read_srn
from srnvtk.ratecontrol import encode
from srnvtk.volume import Volume

MODEL = FVSRNConfig(grid_channels=4, grid_resolution=8, mlp_width=16, mlp_layers=2, fourier_features=2)
TRAIN = TrainConfig(steps=30, batch_size=2048, learning_rate=1e-2, seed=0, device="cpu")
TABLE = ((30.0, "fvsrn"), (math.inf, "fvsrn-haar-variational"))


@pytest.fixture
def table(monkeypatch):
    monkeypatch.setattr(presets, "BY_RATIO", TABLE)


def settings(**encode) -> EncoderSettings:
    return EncoderSettings(encode=EncodeConfig(**encode), fvsrn=MODEL, train=TRAIN)


def test_the_default_architecture_is_auto_and_every_table_row_is_a_known_preset() -> None:
    assert EncodeConfig().architecture == "auto"
    assert presets.BY_RATIO[-1][0] == math.inf and all(name in presets.PRESETS for _, name in presets.BY_RATIO)
    assert [bound for bound, _ in presets.BY_RATIO] == sorted(bound for bound, _ in presets.BY_RATIO)


def test_auto_takes_the_preset_of_the_ratio(table) -> None:
    model, pruning = presets.choose(settings(ratio=20.0), 20.0)
    assert model == MODEL and pruning.method == "none"
    model, pruning = presets.choose(settings(ratio=500.0), 500.0)
    assert model == dataclasses.replace(MODEL, wavelet="haar") and pruning.method == "variational"


def test_explicit_choices_win(table) -> None:
    given = dataclasses.replace(settings(ratio=500.0), pruning=PruningConfig(method="binary"))
    model, pruning = presets.choose(given, 500.0)
    assert pruning.method == "binary" and model.wavelet == "haar"
    given = dataclasses.replace(settings(ratio=500.0), fvsrn=dataclasses.replace(MODEL, wavelet="db2"))
    assert presets.choose(given, 500.0)[0].wavelet == "db2"
    for architecture, expected in (("fvsrn", MODEL), ("neurcomp", NeurcompConfig())):
        model, pruning = presets.choose(settings(ratio=500.0, architecture=architecture), 500.0)
        assert model == expected and pruning.method == "none"


def test_encode_writes_the_chosen_preset(tmp_path, table) -> None:
    shape = (40, 36, 32)
    volume = Volume(default_volume_values(shape), default_geometry(shape), "density")
    encoded = encode(volume, settings(ratio=40.0), path=tmp_path / "a.srn")
    srn = read_srn(tmp_path / "a.srn")
    assert encoded.pruning.method == "variational" == srn.pruning.method
    assert srn.model_config.wavelet == "haar" and srn.stats["file_bytes"] <= 4 * volume.values.size / 40
