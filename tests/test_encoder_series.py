"""The SRN Encoder in plain VTK over several arrays and all time steps (srnvtk.encoder_series): it asks the input
for every step in turn, writes the same file as srnvtk.series_encode, reports one progress over the whole job,
and leaves nothing behind when aborted."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("vtkmodules")

from vtkmodules.util.vtkAlgorithm import VTKPythonAlgorithmBase  # noqa: E402
from vtkmodules.vtkCommonCore import vtkCommand  # noqa: E402
from vtkmodules.vtkCommonDataModel import vtkDataObject, vtkImageData  # noqa: E402
from vtkmodules.vtkCommonExecutionModel import vtkStreamingDemandDrivenPipeline  # noqa: E402

from srnvtk.config import EncoderSettings, FVSRNConfig, TrainConfig  # noqa: E402
from srnvtk.datasets import default_geometry  # noqa: E402
from srnvtk.decode import decode  # noqa: E402
from srnvtk.fileformat import read_srn  # noqa: E402
from srnvtk.series import series_from_arrays  # noqa: E402
from srnvtk.series_data import generate_series  # noqa: E402
from srnvtk.series_encode import encode_series  # noqa: E402
from srnvtk.vtkalgorithms import SRNEncoder  # noqa: E402
from srnvtk.vtkio import fill_image  # noqa: E402

SDDP = vtkStreamingDemandDrivenPipeline
SHAPE = (12, 10, 8)
GEOMETRY = default_geometry(SHAPE)
STEPS = 3
FVSRN = FVSRNConfig(grid_channels=4, grid_resolution=6, mlp_width=12, mlp_layers=2, fourier_features=2)
TRAIN = TrainConfig(steps=40, batch_size=512, learning_rate=1e-2, device="cpu", threads=1)


class TimeSource(VTKPythonAlgorithmBase):
    """A time-varying image source: advertises its steps' times and records which steps were asked for."""

    def __init__(self, times, steps) -> None:
        super().__init__(nInputPorts=0, nOutputPorts=1, outputType="vtkImageData")
        self.times, self.steps, self.requested = list(times), steps, []

    def RequestInformation(self, request, inInfo, outInfo) -> int:  # noqa: N802
        info = outInfo.GetInformationObject(0)
        info.Set(SDDP.WHOLE_EXTENT(), GEOMETRY.extent, 6)
        info.Set(vtkDataObject.SPACING(), GEOMETRY.spacing, 3)
        info.Set(vtkDataObject.ORIGIN(), GEOMETRY.origin, 3)
        info.Set(SDDP.TIME_STEPS(), self.times, len(self.times))
        info.Set(SDDP.TIME_RANGE(), (self.times[0], self.times[-1]), 2)
        return 1

    def RequestData(self, request, inInfo, outInfo) -> int:  # noqa: N802
        info = outInfo.GetInformationObject(0)
        t = info.Get(SDDP.UPDATE_TIME_STEP()) if info.Has(SDDP.UPDATE_TIME_STEP()) else self.times[0]
        step = min(range(len(self.times)), key=lambda i: abs(self.times[i] - t))
        self.requested.append(step)
        output = vtkImageData.GetData(outInfo)
        fill_image(output, GEOMETRY, self.steps[step], active="density")
        output.GetInformation().Set(vtkDataObject.DATA_TIME_STEP(), self.times[step])
        return 1


@pytest.fixture(scope="module")
def generated():
    steps = list(generate_series(SHAPE, STEPS, seed=6))
    return [t for t, _ in steps], [a for _, a in steps]


def tiny_encoder(source: TimeSource, path) -> SRNEncoder:
    encoder = SRNEncoder()
    encoder.SetInputConnection(source.GetOutputPort())
    for name, value in (("Steps", TRAIN.steps), ("BatchSize", TRAIN.batch_size), ("LearningRate", 1e-2),
                        ("GridResolution", 6), ("GridChannels", 4), ("MLPWidth", 12), ("MLPLayers", 2),
                        ("FourierFeatures", 2), ("Device", "cpu"), ("Threads", 1)):
        getattr(encoder, f"Set{name}")(value)
    encoder.SetFileName(str(path))
    return encoder


def test_all_time_steps_and_two_arrays_make_the_series_file(generated, tmp_path) -> None:
    times, steps = generated
    source = TimeSource(times, steps)
    encoder = tiny_encoder(source, tmp_path / "enc.srn")
    encoder.GetEncodeArraySelection().EnableArray("density")
    encoder.GetEncodeArraySelection().EnableArray("velocity")
    encoder.SetAllTimeSteps(1)
    progress = []
    encoder.AddObserver(vtkCommand.ProgressEvent, lambda obj, _event: progress.append(obj.GetProgress()))
    encoder.Update()
    assert source.requested == [0, 1, 2]  # each step asked for in turn
    srn = read_srn(tmp_path / "enc.srn")
    assert srn.times == tuple(times) and [(f.name, f.components) for f in srn.fields] == [("density", 1),
                                                                                         ("velocity", 3)]
    # The same networks as the library trains for the same series and settings (training is deterministic; the
    # files differ in the recorded training times only).
    series = series_from_arrays(GEOMETRY, times, steps)
    encode_series(series, EncoderSettings(fvsrn=FVSRN, train=TRAIN), arrays=["density", "velocity"],
                  path=tmp_path / "lib.srn")
    library = read_srn(tmp_path / "lib.srn")
    for field in range(2):
        for step in range(STEPS):
            np.testing.assert_array_equal(decode(srn, field=field, step=step, device="cpu"),
                                          decode(library, field=field, step=step, device="cpu"))
            assert srn.parts_of(field, step)[0].stored_bytes == library.parts_of(field, step)[0].stored_bytes
    # one bar: the passes that collect the steps, then training, never going back
    assert progress and all(b >= a - 1e-9 for a, b in zip(progress, progress[1:], strict=False))
    assert progress[-1] == 1.0 and max(p for p in progress if p < 0.06) > 0.03  # collecting is a share of it
    output = encoder.GetOutputDataObject(0)
    velocity = output.GetPointData().GetArray("velocity")
    assert velocity.GetNumberOfComponents() == 3
    from vtkmodules.util.numpy_support import vtk_to_numpy

    np.testing.assert_array_equal(vtk_to_numpy(velocity).reshape(8, 10, 12, 3),
                                  decode(srn, field=1, step=STEPS - 1, device="cpu"))
    assert output.GetFieldData().GetArray("psnr") is not None


def test_several_arrays_of_the_current_step(generated, tmp_path) -> None:
    times, steps = generated
    source = TimeSource(times, steps)
    encoder = tiny_encoder(source, tmp_path / "one.srn")
    encoder.GetEncodeArraySelection().EnableArray("temperature")
    encoder.GetEncodeArraySelection().EnableArray("density")
    encoder.UpdateTimeStep(times[1])
    srn = read_srn(tmp_path / "one.srn")
    assert srn.times == (times[1],) and [f.name for f in srn.fields] == ["temperature", "density"]
    assert source.requested == [1]


def test_an_abort_leaves_no_file_and_the_next_run_starts_over(generated, tmp_path) -> None:
    times, steps = generated
    source = TimeSource(times, steps)
    path = tmp_path / "aborted.srn"
    encoder = tiny_encoder(source, path)
    encoder.SetAllTimeSteps(1)

    def abort(obj, _event) -> None:
        if obj.GetProgress() > 0.5:
            obj.SetAbortExecute(1)

    tag = encoder.AddObserver(vtkCommand.ProgressEvent, abort)
    encoder.Update()  # the error goes to VTK's output window
    assert not path.exists() and list(tmp_path.iterdir()) == []
    encoder.RemoveObserver(tag)
    encoder.SetAbortExecute(0)
    encoder.Modified()
    source.requested.clear()
    encoder.Update()
    assert source.requested == [0, 1, 2] and read_srn(path).times == tuple(times)
    assert [f.name for f in read_srn(path).fields] == ["density"]  # no arrays checked: the active scalars


def test_a_file_name_is_required(generated) -> None:
    times, steps = generated
    encoder = tiny_encoder(TimeSource(times, steps), "")
    encoder.SetAllTimeSteps(1)
    messages = []
    from vtkmodules.vtkCommonCore import vtkOutputWindow, vtkStringOutputWindow

    window, previous = vtkStringOutputWindow(), vtkOutputWindow.GetInstance()
    vtkOutputWindow.SetInstance(window)
    try:
        encoder.Update()
        messages.append(window.GetOutput())
    finally:
        vtkOutputWindow.SetInstance(previous)
    assert "set a file name" in messages[0]
