"""Refusals on the encoder's side and in the VTK algorithms: a clear one-line error before any work, never an
allocator's message or a Python traceback."""

from __future__ import annotations

import numpy as np
import pytest

from srnvtk.config import FVSRNConfig, TrainConfig
from srnvtk.datasets import default_geometry, default_volume_values
from srnvtk.encoder import compress
from srnvtk.errors import InputError, SettingsError
from srnvtk.volume import Volume

SHAPE = (12, 10, 9)


def volume(name: str = "density") -> Volume:
    return Volume(default_volume_values(SHAPE), default_geometry(SHAPE), name)


def test_a_model_larger_than_the_machine_is_refused_before_allocating(tmp_path) -> None:
    huge = FVSRNConfig(grid_channels=256, grid_resolution=1024)  # 256 x 1024^3 floats: a terabyte
    with pytest.raises(SettingsError, match=r"the model needs about \d+\.\d GiB to train .* more than the"):
        compress(volume(), model_config=huge, train_config=TrainConfig(steps=1, device="cpu"), path=tmp_path / "a.srn")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ['a"b', "x<y", "tab\there", "&amp", "", "n" * 300])
def test_array_names_no_reader_accepts_are_refused_by_the_encoder(tmp_path, name) -> None:
    with pytest.raises(InputError, match="array name"):
        compress(volume(name), model_config=FVSRNConfig(grid_resolution=4),
                 train_config=TrainConfig(steps=1, device="cpu"), path=tmp_path / "a.srn")
    assert list(tmp_path.iterdir()) == []


def test_the_reader_reports_unexpected_failures_through_vtk(tmp_path, monkeypatch, vtk_errors) -> None:
    from srnvtk import vtkalgorithms

    path = tmp_path / "ok.srn"
    compress(volume(), model_config=FVSRNConfig(grid_resolution=4, grid_channels=2, mlp_width=8, mlp_layers=1),
             train_config=TrainConfig(steps=2, batch_size=64, device="cpu"), path=path)
    reader = vtkalgorithms.SRNReader()
    reader.SetFileName(str(path))

    def broken(*_args, **_kwargs):
        raise RuntimeError("simulated failure deep inside")

    monkeypatch.setattr(vtkalgorithms, "decode", broken)
    assert not reader.Update()
    errors = vtk_errors()
    assert "SRNReader: internal error: RuntimeError: simulated failure deep inside" in errors
    assert "Traceback" not in errors and "ProcessRequest" not in errors
    monkeypatch.setattr(vtkalgorithms, "decode", lambda *_a, **_k: (_ for _ in ()).throw(MemoryError()))
    reader.Modified()
    assert not reader.Update()
    assert "SRNReader: out of memory" in vtk_errors()
    assert np.isfinite(reader.GetOutputDataObject(0).GetNumberOfPoints())
