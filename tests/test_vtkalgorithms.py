"""SRNEncoder and SRNReader in plain VTK pipelines (pip's vtk): outputs, extents, pieces and errors."""

from __future__ import annotations

import os
import shutil
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("vtkmodules")

from vtkmodules.util.numpy_support import vtk_to_numpy  # noqa: E402
from vtkmodules.vtkCommonDataModel import vtkImageData, vtkPolyData  # noqa: E402
from vtkmodules.vtkCommonExecutionModel import vtkTrivialProducer  # noqa: E402

from srnvtk.datasets import default_volume_values  # noqa: E402
from srnvtk.decode import decode, strided_geometry  # noqa: E402
from srnvtk.fileformat import read_srn  # noqa: E402
from srnvtk.metrics import psnr  # noqa: E402
from srnvtk.volume import Geometry  # noqa: E402
from srnvtk.vtkalgorithms import ERROR_ARRAY, SRNEncoder, SRNReader  # noqa: E402
from srnvtk.vtkio import image_from_arrays  # noqa: E402

SHAPE = (16, 14, 12)  # x, y, z point counts
# An extent that does not start at 0 and an odd origin and spacing, so index / world mix-ups show.
GEOMETRY = Geometry((3, 18, -2, 11, 5, 16), (0.5, -1.0, 2.0), (0.25, 0.5, 0.75))



def fast_encoder(file_name: str | os.PathLike | None = None, **settings) -> SRNEncoder:
    """An SRNEncoder with tests' tiny model and short training (see conftest.TINY_MODEL, FAST_TRAIN)."""
    encoder = SRNEncoder()
    values = {"GridChannels": 4, "GridResolution": 8, "MLPWidth": 16, "MLPLayers": 2, "FourierFeatures": 2,
              "Steps": 40, "BatchSize": 4096, "LearningRate": 1e-2, "Seed": 0, "Device": "cpu", **settings}
    for name, value in values.items():
        getattr(encoder, f"Set{name}")(value)
    if file_name is not None:
        encoder.SetFileName(str(file_name))
    return encoder


def reader_for(path: Path) -> SRNReader:
    reader = SRNReader()
    reader.SetFileName(str(path))
    reader.SetDevice("cpu")
    return reader


def output_of(algorithm) -> vtkImageData:
    return algorithm.GetOutputDataObject(0)


def point_array(image: vtkImageData, name: str) -> np.ndarray:
    """A copy of a point array as values[z, y, x]."""
    nx, ny, nz = image.GetDimensions()
    array = image.GetPointData().GetArray(name)
    assert array is not None, f"no point array '{name}'"
    return vtk_to_numpy(array).reshape(nz, ny, nx).copy()


def field_value(image: vtkImageData, name: str):
    array = image.GetFieldData().GetAbstractArray(name)
    assert array is not None, f"no field array '{name}'"
    return array.GetValue(0)


def make_image(values: np.ndarray, geometry: Geometry | None = None, name: str = "density") -> vtkImageData:
    nz, ny, nx = values.shape
    geometry = geometry or Geometry((0, nx - 1, 0, ny - 1, 0, nz - 1))
    return image_from_arrays(geometry, {name: values}, active=name)


@pytest.fixture(scope="module")
def encoded(tmp_path_factory) -> dict:
    """One SRNEncoder run shared by the module: input values, output image, file, progress."""
    folder = tmp_path_factory.mktemp("encoded")
    path = folder / "tiny.srn"
    values = default_volume_values(SHAPE)
    # A second array, the active scalars, so the selection of 'density' matters.
    other = (values // 2).astype(np.float32)
    image = image_from_arrays(GEOMETRY, {"density": values, "other": other}, active="other")
    encoder = fast_encoder(path)
    encoder.SetInputDataObject(0, image)
    encoder.SetInputArrayToProcess(0, 0, 0, 0, "density")
    progress: list[float] = []
    encoder.AddObserver("ProgressEvent", lambda caller, _event: progress.append(caller.GetProgress()))
    assert encoder.Update()
    output = vtkImageData()
    output.DeepCopy(output_of(encoder))
    return {"values": values, "output": output, "path": path, "folder": folder, "encoder": encoder,
            "progress": progress, "reconstruction": point_array(output, "density")}


# ---------------------------------------------------------------------------------------------
# SRNEncoder


def test_encoder_writes_the_file(encoded) -> None:
    assert sorted(p.name for p in encoded["folder"].iterdir()) == ["tiny.srn"]
    srn = read_srn(encoded["path"])
    assert srn.source.array_name == "density"
    assert srn.source.dtype == "uint8"
    assert srn.source.geometry == GEOMETRY


def test_encoder_output_has_reconstruction_and_error(encoded) -> None:
    output, values = encoded["output"], encoded["values"]
    assert output.GetExtent() == GEOMETRY.extent
    assert output.GetOrigin() == GEOMETRY.origin
    assert output.GetSpacing() == GEOMETRY.spacing
    pd = output.GetPointData()
    assert sorted(pd.GetArrayName(i) for i in range(pd.GetNumberOfArrays())) == sorted(["density", ERROR_ARRAY])
    assert pd.GetScalars().GetName() == "density"
    assert pd.GetArray("density").GetDataTypeAsString() == "unsigned char"
    rec = encoded["reconstruction"]
    assert rec.dtype == np.uint8 and rec.shape == values.shape
    error = point_array(output, ERROR_ARRAY)
    assert np.array_equal(error, np.abs(rec.astype(np.float32) - values.astype(np.float32)))
    assert 0 < error.mean() < 40  # it learned something, and it is not a copy


def test_encoder_field_data(encoded) -> None:
    output, values = encoded["output"], encoded["values"]
    size = os.path.getsize(encoded["path"])
    assert field_value(output, "file_bytes") == size
    assert field_value(output, "ratio") == pytest.approx(4 * values.size / size)
    assert field_value(output, "psnr") == pytest.approx(psnr(values, encoded["reconstruction"]))
    assert field_value(output, "steps") == 40
    assert field_value(output, "grid_resolution") == 8
    assert encoded["encoder"].last_stats["file_bytes"] == size


def test_encoder_reports_progress(encoded) -> None:
    progress = encoded["progress"]
    assert len(progress) > 10
    assert all(b >= a for a, b in pairwise(progress))
    assert progress[-1] == pytest.approx(1.0)


def test_encoder_uses_active_scalars_by_default(tiny_image, tmp_path) -> None:
    encoder = fast_encoder(tmp_path / "a.srn", Steps=5)
    encoder.SetInputDataObject(0, tiny_image)
    assert encoder.Update()
    output = output_of(encoder)
    assert output.GetPointData().GetScalars().GetName() == "density"
    assert read_srn(tmp_path / "a.srn").source.array_name == "density"
    assert output.GetDimensions() == tiny_image.GetDimensions()


def test_encoder_follows_the_active_scalars(tmp_path) -> None:
    values = np.linspace(-1, 1, 6 * 5 * 4, dtype=np.float32).reshape(6, 5, 4)
    image = make_image(values, name="pressure")
    encoder = fast_encoder(tmp_path / "a.srn", Steps=5)
    encoder.SetInputDataObject(0, image)
    assert encoder.Update()
    output = output_of(encoder)
    assert output.GetPointData().GetArray("pressure").GetDataTypeAsString() == "float"
    assert point_array(output, "pressure").dtype == np.float32
    assert read_srn(tmp_path / "a.srn").source.dtype == "float32"


def test_encoder_without_file_name_writes_nothing(tiny_image, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    encoder = fast_encoder(Steps=5)
    encoder.SetFileName("None")  # what ParaView pushes for an unset string property
    assert encoder.GetFileName() == ""
    encoder.SetInputDataObject(0, tiny_image)
    assert encoder.Update()
    assert list(tmp_path.iterdir()) == []
    assert output_of(encoder).GetFieldData().GetArray("file_bytes") is None
    assert output_of(encoder).GetFieldData().GetArray("psnr") is not None


def test_encoder_target_ratio_sizes_the_grid(tmp_path) -> None:
    shape = (40, 40, 40)
    encoder = fast_encoder(tmp_path / "a.srn", Steps=2)
    encoder.SetTargetRatio(8.0)
    encoder.SetInputDataObject(0, make_image(default_volume_values(shape)))
    assert encoder.Update()
    size = os.path.getsize(tmp_path / "a.srn")
    assert 4 * 40**3 / size >= 8.0
    assert field_value(output_of(encoder), "grid_resolution") != 8  # chosen for the ratio, not the setting


# ---------------------------------------------------------------------------------------------
# SRNEncoder errors: Update fails, the error is shown, no file is written


def nan_image() -> vtkImageData:
    values = np.linspace(0, 1, 6 * 5 * 4, dtype=np.float32).reshape(6, 5, 4)
    values[2, 3, 1] = np.nan
    return make_image(values)


def two_component_image() -> vtkImageData:
    image = make_image(np.zeros((6, 5, 4), dtype=np.float32))
    from vtkmodules.util.numpy_support import numpy_to_vtk

    vectors = numpy_to_vtk(np.random.default_rng(0).random((120, 2)).astype(np.float32), deep=True)
    vectors.SetName("density")
    image.GetPointData().AddArray(vectors)  # replaces the scalar 'density'
    return image


BAD_INPUTS = {
    "missing-array": (lambda: make_image(np.arange(120, dtype=np.float32).reshape(6, 5, 4)), "nope",
                      "no point-data array 'nope'; the input has: density"),
    "2d-image": (lambda: make_image(np.arange(20, dtype=np.float32).reshape(1, 5, 4)), None, "2D image"),
    "nan": (nan_image, "density", "holds 1 NaN or infinite values"),
    "constant": (lambda: make_image(np.full((6, 5, 4), 7, dtype=np.int16)), None, "is constant (7)"),
    "vectors": (two_component_image, "density", "has 2 components"),
    "int64": (lambda: make_image(np.arange(120, dtype=np.int64).reshape(6, 5, 4)), None, "type int64"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_encoder_rejects_bad_input(case, tmp_path, vtk_errors) -> None:
    make, array, message = BAD_INPUTS[case]
    encoder = fast_encoder(tmp_path / "a.srn", Steps=5)
    encoder.SetInputDataObject(0, make())
    if array is not None:
        encoder.SetInputArrayToProcess(0, 0, 0, 0, array)
    assert not encoder.Update()
    assert "SRNEncoder: " in vtk_errors()
    assert message in vtk_errors()
    assert list(tmp_path.iterdir()) == []


def test_encoder_rejects_non_image_input(tmp_path, vtk_errors) -> None:
    producer = vtkTrivialProducer()
    producer.SetOutput(vtkPolyData())
    encoder = fast_encoder(tmp_path / "a.srn", Steps=5)
    encoder.SetInputConnection(producer.GetOutputPort())
    assert not encoder.Update()
    assert "is of type vtkPolyData, but a vtkImageData is required" in vtk_errors()
    assert list(tmp_path.iterdir()) == []


def test_encoder_without_input_fails_cleanly(tmp_path, vtk_errors) -> None:
    encoder = fast_encoder(tmp_path / "a.srn", Steps=5)
    assert not encoder.Update()
    assert vtk_errors()
    assert list(tmp_path.iterdir()) == []


def test_encoder_into_missing_folder(tiny_image, tmp_path, vtk_errors) -> None:
    encoder = fast_encoder(tmp_path / "nowhere" / "a.srn", Steps=5)
    encoder.SetInputDataObject(0, tiny_image)
    assert not encoder.Update()
    assert "SRNEncoder: cannot write" in vtk_errors() and "does not exist" in vtk_errors()


def test_encoder_bad_settings_are_reported_and_ignored(tiny_image, tmp_path, vtk_errors) -> None:
    encoder = fast_encoder(tmp_path / "a.srn", Steps=5)
    encoder.SetDevice("tpu")
    assert "SRNEncoder: device must be one of auto, cpu, cuda, got 'tpu'" in vtk_errors()
    encoder.SetSteps(0)
    assert "SRNEncoder: steps must be an integer in [1," in vtk_errors()
    encoder.SetGridChannels(0)
    assert "grid_channels" in vtk_errors()
    encoder.SetLearningRate(2.0)
    assert "learning_rate" in vtk_errors()
    # The previous valid settings stay in force.
    encoder.SetInputDataObject(0, tiny_image)
    assert encoder.Update()
    assert field_value(output_of(encoder), "steps") == 5
    assert read_srn(tmp_path / "a.srn").model_config.grid_channels == 4


def test_encoder_abort(tiny_image, tmp_path, vtk_errors) -> None:
    encoder = fast_encoder(tmp_path / "a.srn", Steps=100_000)
    encoder.SetInputDataObject(0, tiny_image)
    encoder.AddObserver("ProgressEvent", lambda caller, _event: caller.SetAbortExecute(1))
    assert not encoder.Update()
    assert "SRNEncoder: training aborted at step" in vtk_errors()
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# SRNReader


def test_reader_full_output_equals_the_reconstruction(encoded) -> None:
    reader = reader_for(encoded["path"])
    assert reader.Update()
    output = output_of(reader)
    assert output.GetExtent() == GEOMETRY.extent
    assert output.GetOrigin() == pytest.approx(GEOMETRY.origin)
    assert output.GetSpacing() == pytest.approx(GEOMETRY.spacing)
    assert output.GetPointData().GetScalars().GetName() == "density"
    values = point_array(output, "density")
    assert values.dtype == np.uint8
    assert np.array_equal(values, encoded["reconstruction"])
    assert field_value(output, "source_array") == "density"
    assert field_value(output, "psnr") == pytest.approx(field_value(encoded["output"], "psnr"))


def slice_of(image: vtkImageData, stride=(1, 1, 1)) -> tuple[slice, slice, slice]:
    """Where an output image's points sit in the source's [z, y, x] array."""
    e, s = image.GetExtent(), GEOMETRY.extent
    return tuple(slice(e[2 * a] * stride[a] - s[2 * a], e[2 * a + 1] * stride[a] - s[2 * a] + 1, stride[a])
                 for a in (2, 1, 0))


def assert_matches(values: np.ndarray, expected: np.ndarray) -> None:
    """Equal, but for a rare rounding flip where float32 batching differs (uint8 output)."""
    assert values.shape == expected.shape
    diff = np.abs(values.astype(np.int16) - expected.astype(np.int16))
    assert diff.max() <= 1
    assert np.count_nonzero(diff) <= max(1, values.size // 200)


def test_reader_stride(encoded) -> None:
    reader = reader_for(encoded["path"])
    reader.SetStride(2, 2, 2)
    assert reader.Update()
    output = output_of(reader)
    # x 3..18 -> 2..9 (points 4, 6, ..., 18); y -2..11 -> -1..5; z 5..16 -> 3..8.
    assert output.GetExtent() == (2, 9, -1, 5, 3, 8)
    assert output.GetSpacing() == pytest.approx(tuple(2 * s for s in GEOMETRY.spacing))
    assert output.GetOrigin() == pytest.approx(GEOMETRY.origin)
    assert output.GetBounds()[0] == pytest.approx(GEOMETRY.origin[0] + 4 * GEOMETRY.spacing[0])
    values = point_array(output, "density")
    assert_matches(values, encoded["reconstruction"][slice_of(output, (2, 2, 2))])
    srn = read_srn(encoded["path"])
    geometry = strided_geometry(GEOMETRY, (2, 2, 2))
    assert np.array_equal(values, decode(srn, geometry, device="cpu"))


def test_reader_uneven_stride(encoded) -> None:
    reader = reader_for(encoded["path"])
    reader.SetStride(3, 1, 4)
    assert reader.Update()
    output = output_of(reader)
    assert output.GetExtent() == (1, 6, -2, 11, 2, 4)
    assert_matches(point_array(output, "density"), encoded["reconstruction"][slice_of(output, (3, 1, 4))])


def test_reader_target_dimensions(encoded) -> None:
    reader = reader_for(encoded["path"])
    dims = tuple(2 * n - 1 for n in SHAPE)
    reader.SetTargetDimensions(*dims)
    assert reader.Update()
    output = output_of(reader)
    assert output.GetDimensions() == dims
    assert output.GetBounds() == pytest.approx(sum(GEOMETRY.bounds(), ()))
    values = point_array(output, "density")
    assert_matches(values[::2, ::2, ::2], encoded["reconstruction"])
    # 0 0 0 goes back to the stride.
    reader.SetTargetDimensions(0, 0, 0)
    assert reader.Update()
    assert output_of(reader).GetExtent() == GEOMETRY.extent


def test_reader_sub_extent(encoded) -> None:
    reader = reader_for(encoded["path"])
    reader.SetSubExtent(5, 12, 0, 7, 6, 11)
    assert reader.Update()
    output = output_of(reader)
    assert output.GetExtent() == (5, 12, 0, 7, 6, 11)
    assert_matches(point_array(output, "density"), encoded["reconstruction"][slice_of(output)])
    # An empty range means the whole grid again.
    reader.SetSubExtent(0, -1, 0, -1, 0, -1)
    assert reader.Update()
    assert output_of(reader).GetExtent() == GEOMETRY.extent


def test_reader_sub_extent_with_stride(encoded) -> None:
    reader = reader_for(encoded["path"])
    reader.SetSubExtent(5, 12, 0, 7, 6, 11)
    reader.SetStride(2, 3, 2)
    assert reader.Update()
    output = output_of(reader)
    assert output.GetExtent() == (3, 6, 0, 2, 3, 5)
    assert_matches(point_array(output, "density"), encoded["reconstruction"][slice_of(output, (2, 3, 2))])


def test_pipeline_update_extent_request(encoded) -> None:
    reader = reader_for(encoded["path"])
    request = (4, 10, 1, 6, 7, 15)
    assert reader.UpdateExtent(request)
    output = output_of(reader)
    assert output.GetExtent() == request
    assert_matches(point_array(output, "density"), encoded["reconstruction"][slice_of(output)])


def test_two_pieces_cover_the_whole(encoded) -> None:
    reader = reader_for(encoded["path"])
    assembled = np.full(encoded["values"].shape, -1, dtype=np.int16)
    extents = []
    for piece in (0, 1):
        reader.UpdatePiece(piece, 2, 0)
        output = output_of(reader)
        extents.append(output.GetExtent())
        values = point_array(output, "density").astype(np.int16)
        region = assembled[slice_of(output)]
        shared = region >= 0
        assert np.array_equal(region[shared], values[shared])  # pieces agree where they touch
        assembled[slice_of(output)] = values
    assert extents[0] != extents[1]
    assert all(extent != GEOMETRY.extent for extent in extents)  # each piece is a real part
    assert (assembled >= 0).all()
    assert_matches(assembled, encoded["reconstruction"])


def test_streamer_assembles_the_whole(encoded) -> None:
    from vtkmodules.vtkImagingCore import vtkImageDataStreamer

    streamer = vtkImageDataStreamer()
    streamer.SetNumberOfStreamDivisions(3)
    reader = reader_for(encoded["path"])
    streamer.SetInputConnection(reader.GetOutputPort())
    streamer.Update()
    output = streamer.GetOutput()
    assert output.GetExtent() == GEOMETRY.extent
    # The streamer names its assembled scalars itself; their type comes from the reader's information.
    scalars = output.GetPointData().GetScalars()
    assert scalars.GetDataTypeAsString() == "unsigned char"
    assert_matches(point_array(output, scalars.GetName()), encoded["reconstruction"])


def test_reader_rereads_a_changed_file(encoded, tmp_path) -> None:
    path = tmp_path / "changing.srn"
    shutil.copyfile(encoded["path"], path)
    reader = reader_for(path)
    assert reader.Update()
    first = point_array(output_of(reader), "density")
    encoder = fast_encoder(path, Steps=5, Seed=1)
    encoder.SetInputDataObject(0, make_image(encoded["values"], GEOMETRY))
    assert encoder.Update()
    reader.Modified()
    assert reader.Update()
    second = point_array(output_of(reader), "density")
    assert np.array_equal(second, point_array(output_of(encoder), "density"))
    assert not np.array_equal(first, second)


# ---------------------------------------------------------------------------------------------
# SRNReader errors


def test_reader_truncated_file(encoded, tmp_path, vtk_errors) -> None:
    path = tmp_path / "cut.srn"
    path.write_bytes(encoded["path"].read_bytes()[:1000])
    reader = reader_for(path)
    assert not reader.Update()
    assert "SRNReader:" in vtk_errors() and "damaged or not a srnvtk file" in vtk_errors()
    assert str(path) in vtk_errors()


def test_reader_missing_file(tmp_path, vtk_errors) -> None:
    reader = reader_for(tmp_path / "missing.srn")
    assert not reader.Update()
    assert "SRNReader: no such .srn file" in vtk_errors()


def test_reader_without_file_name(vtk_errors) -> None:
    reader = SRNReader()
    reader.SetFileName("None")  # what ParaView pushes for an unset string property
    assert reader.GetFileName() == ""
    assert not reader.Update()
    assert "SRNReader: no file name set" in vtk_errors()


def test_reader_recovers_after_an_error(encoded, tmp_path, vtk_errors) -> None:
    reader = reader_for(tmp_path / "missing.srn")
    assert not reader.Update()
    reader.SetFileName(str(encoded["path"]))
    assert reader.Update()
    assert np.array_equal(point_array(output_of(reader), "density"), encoded["reconstruction"])


def test_reader_bad_settings(encoded, vtk_errors) -> None:
    reader = reader_for(encoded["path"])
    reader.SetDevice("tpu")
    assert "SRNReader: device must be one of auto, cpu, cuda, got 'tpu'" in vtk_errors()
    assert reader.Update()  # the device stays as it was
    reader.SetStride(0, 1, 1)
    assert "stride must be 3 integers in [1, " in vtk_errors()
    assert reader.GetStride() == (1, 1, 1) and reader.Update()  # refused by the setter: the stride stays
    reader.SetSubExtent(40, 50, 0, 5, 5, 9)
    assert not reader.Update()
    assert "lies outside the grid" in vtk_errors()
    reader.SetThreads(-1)
    assert "SRNReader: threads must be an integer in [0, 1024], got -1" in vtk_errors()
    reader.SetPrecision("fp8")
    assert "SRNReader: precision must be one of fp32, fp16, auto, got 'fp8'" in vtk_errors()


def test_reader_threads_and_precision_on_the_cpu_do_not_change_the_values(encoded) -> None:
    reader = reader_for(encoded["path"])
    reader.SetThreads(1)
    reader.SetPrecision("auto")  # fp32 on the CPU
    assert reader.Update()
    assert np.array_equal(point_array(output_of(reader), "density"), encoded["reconstruction"])


# ---------------------------------------------------------------------------------------------
# Architectures and pruning in the encoder


@pytest.mark.parametrize(
    "settings",
    [
        {"Architecture": "neurcomp", "NeurcompWidth": 10, "NeurcompBlocks": 2, "Residual": 0, "Pruning": "binary"},
        {"Pruning": "variational", "KLWeight": 3e4, "StaticSigma": 0.5, "KLRampFraction": 0.0,
         "PruningGranularity": "position_channel"},
    ],
    ids=["neurcomp-binary", "fvsrn-variational"],
)
def test_encoder_prunes_and_the_reader_matches(tiny_image, tmp_path, settings) -> None:
    path = tmp_path / "p.srn"
    encoder = fast_encoder(path, Steps=45, L1Weight=20.0, MaskLearningRate=0.3, LearningRate=0, **settings)
    encoder.SetInputDataObject(0, tiny_image)
    assert encoder.Update()
    output = output_of(encoder)
    size = os.path.getsize(path)
    assert field_value(output, "file_bytes") == size
    assert 0 < field_value(output, "pruned_fraction") < 1
    assert field_value(output, "architecture") == settings.get("Architecture", "fvsrn")
    assert field_value(output, "pruning") == settings["Pruning"]
    srn = read_srn(path)
    assert srn.pruning.method == settings["Pruning"]
    if "NeurcompWidth" in settings:
        assert field_value(output, "neurcomp_width") == 10
        assert srn.model_config.width == 10 and not srn.model_config.residual
    reader = reader_for(path)
    reader.Update()
    assert np.array_equal(point_array(output_of(reader), "density"), point_array(output, "density"))
    assert field_value(output_of(reader), "pruned_fraction") == pytest.approx(field_value(output, "pruned_fraction"))


def test_encoder_bad_architecture_and_pruning_settings(vtk_errors) -> None:
    encoder = fast_encoder()
    encoder.SetArchitecture("siren")
    assert "architecture must be one of auto, fvsrn, neurcomp, got 'siren'" in vtk_errors()
    encoder.SetPruning("magic")
    assert "method must be one of none, smallify, variational, binary" in vtk_errors()
    encoder.SetPruningGranularity("voxel")
    assert "granularity must be one of position, position_channel" in vtk_errors()
    encoder.SetNeurcompWidth(0)
    assert "width must be" in vtk_errors()
    encoder.SetDropoutThreshold(1.0)
    assert "dropout_threshold" in vtk_errors()
    assert encoder.model_config().architecture == "fvsrn" and encoder.pruning_config().method == "none"


def test_encoder_output_drops_stale_srn_field_data_of_its_input(tiny_image):
    """An input that came from a .srn reader carries that file's stats; the encoder must not pass them on."""
    from vtkmodules.vtkCommonCore import vtkDoubleArray
    from vtkmodules.vtkCommonExecutionModel import vtkTrivialProducer

    stale = vtkDoubleArray()
    stale.SetName("file_bytes")
    stale.InsertNextValue(123456789.0)
    tiny_image.GetFieldData().AddArray(stale)
    producer = vtkTrivialProducer()
    producer.SetOutput(tiny_image)
    encoder = SRNEncoder()
    encoder.SetInputConnection(producer.GetOutputPort())
    encoder.SetGridResolution(4)
    encoder.SetSteps(5)
    encoder.SetBatchSize(256)
    encoder.Update()
    fd = encoder.GetOutputDataObject(0).GetFieldData()
    assert fd.GetArray("psnr") is not None
    assert fd.GetArray("file_bytes") is None  # no file written, and the input's value is gone


def test_encoder_wavelet_grid_and_the_reader_matches(tiny_image, tmp_path) -> None:
    path = tmp_path / "w.srn"
    encoder = fast_encoder(path, Wavelet="bior2.2", WaveletLevels=0, Pruning="variational")
    assert encoder.model_config().wavelet == "bior2.2" and encoder.model_config().wavelet_levels is None
    encoder.SetWaveletLevels(1)
    assert encoder.model_config().wavelet_levels == 1
    encoder.SetInputDataObject(0, tiny_image)
    assert encoder.Update()
    assert field_value(output_of(encoder), "wavelet") == "bior2.2"
    assert read_srn(path).model.transform.levels == (1, 1, 1)
    reader = reader_for(path)
    reader.Update()
    assert np.array_equal(point_array(output_of(reader), "density"), point_array(output_of(encoder), "density"))
    encoder.SetWavelet("none")
    assert encoder.model_config().wavelet is None


def test_encoder_reports_an_unknown_wavelet(vtk_errors) -> None:
    encoder = fast_encoder(Wavelet="haar")
    encoder.SetWavelet("db99")
    assert encoder.model_config().wavelet == "haar"  # the old setting stays
    assert "unknown wavelet 'db99'" in vtk_errors() and "sym2..sym20" in vtk_errors()
    encoder.SetWaveletLevels(-2)
    assert "wavelet_levels must be an integer in [1, 16], got -2" in vtk_errors()
