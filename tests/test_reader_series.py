"""The SRN Reader on a series file in plain VTK: TIME_STEPS/TIME_RANGE, the step at or below a requested time,
PointArrayStatus selection, and decoding only the requested step and arrays."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("vtkmodules")

from vtkmodules.util.numpy_support import vtk_to_numpy  # noqa: E402
from vtkmodules.vtkCommonDataModel import vtkDataObject  # noqa: E402
from vtkmodules.vtkCommonExecutionModel import vtkStreamingDemandDrivenPipeline  # noqa: E402

from srnvtk.config import EncodeConfig, EncoderSettings, FVSRNConfig, TrainConfig  # noqa: E402
from srnvtk.datasets import default_geometry  # noqa: E402
from srnvtk.decode import decode  # noqa: E402
from srnvtk.encoder import compress  # noqa: E402
from srnvtk.fileformat import read_srn  # noqa: E402
from srnvtk.series import series_from_arrays  # noqa: E402
from srnvtk.series_data import generate_series  # noqa: E402
from srnvtk.series_encode import encode_series  # noqa: E402
from srnvtk.volume import Volume  # noqa: E402
from srnvtk.vtkalgorithms import SRNReader  # noqa: E402

SDDP = vtkStreamingDemandDrivenPipeline

SHAPE = (12, 10, 8)
STEPS = 3
FVSRN = FVSRNConfig(grid_channels=4, grid_resolution=5, mlp_width=8, mlp_layers=1, fourier_features=1)
TRAIN = TrainConfig(steps=30, batch_size=256, learning_rate=1e-2, device="cpu", threads=1)


@pytest.fixture(scope="module")
def series_file(tmp_path_factory):
    steps = list(generate_series(SHAPE, STEPS, seed=4))
    series = series_from_arrays(default_geometry(SHAPE), [t for t, _ in steps], [a for _, a in steps])
    path = tmp_path_factory.mktemp("reader") / "series.srn"
    settings = EncoderSettings(encode=EncodeConfig(time_scheme="warm"), fvsrn=FVSRN, train=TRAIN)  # whole parts
    encode_series(series, settings, arrays=["density", "temperature"], path=path)
    return path


def arrays_of(reader: SRNReader) -> dict[str, np.ndarray]:
    image = reader.GetOutputDataObject(0)
    nx, ny, nz = image.GetDimensions()
    pd = image.GetPointData()
    return {pd.GetArrayName(i): vtk_to_numpy(pd.GetArray(i)).reshape(nz, ny, nx)
            for i in range(pd.GetNumberOfArrays())}


def output_time(reader: SRNReader) -> float:
    return reader.GetOutputDataObject(0).GetInformation().Get(vtkDataObject.DATA_TIME_STEP())


def test_the_reader_advertises_the_times(series_file) -> None:
    srn = read_srn(series_file)
    reader = SRNReader()
    reader.SetFileName(str(series_file))
    reader.UpdateInformation()
    info = reader.GetOutputInformation(0)
    assert tuple(info.Get(SDDP.TIME_STEPS())) == srn.times
    assert tuple(info.Get(SDDP.TIME_RANGE())) == (srn.times[0], srn.times[-1])
    assert reader.GetTimestepValues() == list(srn.times)
    assert [reader.GetPointArrayName(i) for i in range(reader.GetNumberOfPointArrays())] == ["density",
                                                                                           "temperature"]
    assert reader.GetPointArrayStatus("density") == 1


def test_every_time_gives_its_step_and_arrays(series_file) -> None:
    srn = read_srn(series_file)
    reader = SRNReader()
    reader.SetFileName(str(series_file))
    for step, t in enumerate(srn.times):
        reader.UpdateTimeStep(t)
        got = arrays_of(reader)
        assert sorted(got) == ["density", "temperature"] and output_time(reader) == t
        for field, name in enumerate(["density", "temperature"]):
            np.testing.assert_array_equal(got[name], decode(srn, field=field, step=step, device="cpu"))
    between = (srn.times[1] + srn.times[2]) / 2
    reader.UpdateTimeStep(between)  # the step at or below
    assert output_time(reader) == srn.times[1]
    np.testing.assert_array_equal(arrays_of(reader)["density"], decode(srn, step=1, device="cpu"))
    reader.UpdateTimeStep(srn.times[0] - 5.0)  # before the first: the first
    assert output_time(reader) == srn.times[0]
    reader.UpdateTimeStep(srn.times[-1] + 5.0)  # after the last: the last
    assert output_time(reader) == srn.times[-1]


def test_only_the_selected_arrays_of_the_requested_step_are_decoded(series_file) -> None:
    srn = read_srn(series_file)
    reader = SRNReader()
    reader.SetFileName(str(series_file))
    reader.UpdateInformation()
    before = reader.GetMTime()
    reader.SetPointArrayStatus("density", 0)
    assert reader.GetMTime() > before  # the selection is part of the reader's state
    reader.UpdateTimeStep(srn.times[2])
    got = arrays_of(reader)
    assert list(got) == ["temperature"]
    np.testing.assert_array_equal(got["temperature"], decode(srn, field=1, step=2, device="cpu"))
    assert reader.srn_file().sections_read == 1  # one fV-SRN part (format 9: one section): nothing else
    reader.GetPointDataArraySelection().DisableArray("temperature")
    reader.Update()
    assert arrays_of(reader) == {}  # nothing selected: the grid alone
    reader.GetPointDataArraySelection().EnableAllArrays()
    reader.Update()
    assert sorted(arrays_of(reader)) == ["density", "temperature"]


def test_a_status_set_before_the_file_is_read_is_kept(series_file) -> None:
    reader = SRNReader()
    reader.SetPointArrayStatus("temperature", 0)  # as a saved ParaView state pushes it
    reader.SetFileName(str(series_file))
    reader.Update()
    assert list(arrays_of(reader)) == ["density"]


def test_a_single_network_file_has_no_time(tmp_path) -> None:
    values = np.random.default_rng(0).random((8, 10, 12)).astype(np.float32)
    path = tmp_path / "one.srn"
    compress(Volume(values, default_geometry(SHAPE), "v"), model_config=FVSRN, train_config=TRAIN, path=path)
    reader = SRNReader()
    reader.SetFileName(str(path))
    reader.Update()
    info = reader.GetOutputInformation(0)
    assert not info.Has(SDDP.TIME_STEPS()) and reader.GetTimestepValues() == []
    assert list(arrays_of(reader)) == ["v"]
