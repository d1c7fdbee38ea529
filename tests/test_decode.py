"""Decoding: strides, sub-extents and resampling agree with the full grid; batching, types and errors."""

from __future__ import annotations

import warnings
from itertools import pairwise

import numpy as np
import pytest
import torch

from srnvtk.config import FVSRNConfig, TrainConfig
from srnvtk.datasets import default_volume_values
from srnvtk.decode import clip_extent, decode, resampled_geometry, strided_geometry, to_dtype, world_axis
from srnvtk.errors import SettingsError
from srnvtk.fileformat import SRNFile
from srnvtk.sampling import voxel_positions
from srnvtk.train import train
from srnvtk.volume import Geometry, Volume

# Odd point counts and an extent that does not start at 0 (negative along y), with an odd origin and
# spacing, so index / world mix-ups show.
SOURCE = Geometry((2, 14, -3, 7, 5, 13), (0.5, -1.0, 2.0), (0.3, 0.7, 0.45))  # 13 x 11 x 9 points
VALUE_RANGE = (-10.0, 250.0)
MODEL = FVSRNConfig(grid_channels=4, grid_resolution=8, mlp_width=16, mlp_layers=2, fourier_features=2)
TRAIN = TrainConfig(steps=30, batch_size=2048, learning_rate=1e-2, seed=0, device="cpu")



@pytest.fixture(scope="module")
def model():
    """A briefly trained network, so its output varies across the grid."""
    volume = Volume(default_volume_values(SOURCE.dimensions), SOURCE, "density")
    return train(volume, MODEL, TRAIN).model


@pytest.fixture(scope="module")
def full(model) -> np.ndarray:
    return run(model, SOURCE)


def run(model, output: Geometry, dtype: str = "float64", **kwargs) -> np.ndarray:
    return decode(SRNFile.of_model(model, SOURCE, VALUE_RANGE, dtype), output, device="cpu", **kwargs)


def source_slice(output: Geometry, stride=(1, 1, 1)) -> tuple[slice, slice, slice]:
    """Index of the output's points in the full [z, y, x] array (output index j sits on source j * stride)."""
    slices = []
    for a in (2, 1, 0):
        lo = output.extent[2 * a] * stride[a] - SOURCE.extent[2 * a]
        hi = output.extent[2 * a + 1] * stride[a] - SOURCE.extent[2 * a]
        slices.append(slice(lo, hi + 1, stride[a]))
    return tuple(slices)


def close(a: np.ndarray, b: np.ndarray) -> None:
    """Equal up to float32 rounding of the network (the same positions, possibly batched differently)."""
    assert a.shape == b.shape
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * (VALUE_RANGE[1] - VALUE_RANGE[0]))


# ---------------------------------------------------------------------------------------------
# The full grid


def test_full_decode_is_what_training_saw(model, full) -> None:
    """Decoding the source grid evaluates the network where training sampled each voxel."""
    shape = SOURCE.shape_zyx
    with torch.no_grad():
        normalised = model(voxel_positions(torch.arange(int(np.prod(shape))), shape)).double().numpy()
    expected = normalised.reshape(shape) * (VALUE_RANGE[1] - VALUE_RANGE[0]) + VALUE_RANGE[0]
    assert full.shape == shape
    np.testing.assert_allclose(full, expected, rtol=0, atol=1e-5 * (VALUE_RANGE[1] - VALUE_RANGE[0]))
    assert full.std() > 1.0  # the trained network is not flat


def test_world_axis() -> None:
    assert np.allclose(world_axis(SOURCE, 1), -1.0 + 0.7 * np.arange(-3, 8))


# ---------------------------------------------------------------------------------------------
# Strides and regions


@pytest.mark.parametrize("stride", [(2, 2, 2), (3, 3, 3), (2, 3, 1), (1, 1, 4)])
def test_stride_equals_slice_of_full(model, full, stride) -> None:
    output = strided_geometry(SOURCE, stride)
    assert output.spacing == pytest.approx(tuple(s * k for s, k in zip(SOURCE.spacing, stride, strict=True)))
    assert output.origin == SOURCE.origin
    values = run(model, output)
    close(values, full[source_slice(output, stride)])


def test_stride_extent_stays_on_source_points() -> None:
    output = strided_geometry(SOURCE, (2, 3, 2))
    # x: source 2..14 -> 1..7 (points 2, 4, ..., 14); y: -3..7 -> -1..2 (-3, 0, 3, 6); z: 5..13 -> 3..6.
    assert output.extent == (1, 7, -1, 2, 3, 6)
    for a in range(3):
        source_world = world_axis(SOURCE, a)
        assert np.isin(np.round(world_axis(output, a), 9), np.round(source_world, 9)).all()


def test_sub_extent_equals_slice(model, full) -> None:
    region = (4, 9, 0, 5, 6, 11)
    output = strided_geometry(SOURCE, (1, 1, 1), region)
    assert output.extent == region
    close(run(model, output), full[source_slice(output)])


def test_sub_extent_is_clipped_to_the_grid(model, full) -> None:
    output = strided_geometry(SOURCE, (1, 1, 1), (-50, 3, 5, 50, 12, 13))
    assert output.extent == (2, 3, 5, 7, 12, 13)
    close(run(model, output), full[source_slice(output)])


def test_stride_with_region(model, full) -> None:
    stride = (2, 3, 2)
    output = strided_geometry(SOURCE, stride, (3, 12, -2, 7, 6, 13))
    assert output.extent == (2, 6, 0, 2, 3, 6)  # first and last multiples of the stride inside the region
    close(run(model, output), full[source_slice(output, stride)])


def test_pieces_tile_the_whole(model, full) -> None:
    x0, x1, y0, y1, z0, z1 = SOURCE.extent
    pieces = [(x0, 7, y0, y1, z0, z1), (8, x1, y0, y1, z0, 8), (8, x1, y0, y1, 9, z1)]
    assembled = np.full(full.shape, np.nan)
    for piece in pieces:
        output = Geometry(piece, SOURCE.origin, SOURCE.spacing)
        assembled[source_slice(output)] = run(model, output)
    close(assembled, full)


# ---------------------------------------------------------------------------------------------
# Resampling


def test_resample_to_same_dimensions_equals_full(model, full) -> None:
    output = resampled_geometry(SOURCE, SOURCE.dimensions)
    assert output.dimensions == SOURCE.dimensions
    assert np.allclose(output.bounds(), SOURCE.bounds())
    close(run(model, output), full)


def test_resample_to_double_resolution_matches_at_shared_points(model, full) -> None:
    dims = tuple(2 * n - 1 for n in SOURCE.dimensions)
    output = resampled_geometry(SOURCE, dims)
    assert np.allclose(output.bounds(), SOURCE.bounds())
    fine = run(model, output)
    assert fine.shape == (dims[2], dims[1], dims[0])
    close(fine[::2, ::2, ::2], full)
    # The points in between are new values, not copies of a neighbour.
    assert not np.allclose(fine[1::2, ::2, ::2], full[:-1])


def test_resample_to_twice_the_points_keeps_the_bounds(model, full) -> None:
    dims = tuple(2 * n for n in SOURCE.dimensions)
    fine = run(model, resampled_geometry(SOURCE, dims))
    # Only the corners of the two grids coincide.
    for z, y, x in [(0, 0, 0), (-1, -1, -1), (0, -1, 0), (-1, 0, -1)]:
        assert fine[z, y, x] == pytest.approx(full[z, y, x], abs=1e-4)


def test_resample_region(model, full) -> None:
    region = (4, 10, -1, 5, 6, 12)
    output = resampled_geometry(SOURCE, (7, 7, 7), region)
    assert output.extent == (0, 6, 0, 6, 0, 6)
    sub = strided_geometry(SOURCE, (1, 1, 1), region)
    assert np.allclose(output.bounds(), sub.bounds())
    close(run(model, output), full[source_slice(sub)])


def test_resample_to_one_point_along_an_axis(model) -> None:
    output = resampled_geometry(SOURCE, (5, 4, 1))
    assert output.dimensions == (5, 4, 1)
    assert np.isfinite(run(model, output)).all()


# ---------------------------------------------------------------------------------------------
# Batching and progress


@pytest.mark.parametrize("batch_points", [1, 7, 13 * 11 - 1, 13 * 11 + 1, 13 * 11 * 2, 1 << 20])
def test_batch_size_does_not_change_results(model, full, batch_points) -> None:
    close(run(model, SOURCE, batch_points=batch_points), full)


def test_batch_size_does_not_change_integer_results(model) -> None:
    assert np.array_equal(run(model, SOURCE, "uint8", batch_points=7), run(model, SOURCE, "uint8"))


def test_progress_reaches_one(model) -> None:
    fractions: list[float] = []
    run(model, SOURCE, batch_points=50, progress=fractions.append)
    assert len(fractions) > 5
    assert all(b > a for a, b in pairwise(fractions))
    assert fractions[-1] == 1.0


# ---------------------------------------------------------------------------------------------
# Output types


def test_to_dtype_rounds_and_clips() -> None:
    values = np.array([-3.2, -0.4, 0.4, 0.6, 1.5, 254.4, 254.6, 300.0, 1e9])
    assert to_dtype(values, "uint8").tolist() == [0, 0, 0, 1, 2, 254, 255, 255, 255]
    assert to_dtype(values, "int8").tolist() == [-3, 0, 0, 1, 2, 127, 127, 127, 127]
    assert to_dtype(np.array([-40000.7, 40000.7]), "int16").tolist() == [-32768, 32767]
    assert to_dtype(values, "uint8").dtype == np.uint8
    floats = to_dtype(values, "float32")
    assert floats.dtype == np.float32 and floats[0] == np.float32(-3.2)


@pytest.mark.parametrize("dtype", ["uint8", "int16", "float32"])
def test_output_type_follows_the_source(model, full, dtype) -> None:
    values = run(model, SOURCE, dtype)
    assert values.dtype == np.dtype(dtype)
    assert np.array_equal(values, to_dtype(full, dtype))


def test_uint8_output_is_clipped(model, full) -> None:
    # The range runs below 0: the uint8 output clips there rather than wrapping around.
    assert full.min() < -0.5
    values = run(model, SOURCE, "uint8")
    assert values[full < -0.5].max() == 0
    assert np.array_equal(values[full > 0.5], np.rint(full[full > 0.5]).clip(0, 255).astype(np.uint8))


# ---------------------------------------------------------------------------------------------
# Bad requests


@pytest.mark.parametrize("stride", [(0, 1, 1), (1, -2, 1), (1, 1), (1, 1, 1, 1)])
def test_bad_strides_raise(stride) -> None:
    with pytest.raises(SettingsError, match="stride must be three integers >= 1"):
        strided_geometry(SOURCE, stride)


def test_stride_beyond_a_tiny_region_raises() -> None:
    with pytest.raises(SettingsError, match="stride 4 leaves no point"):
        strided_geometry(SOURCE, (4, 1, 1), (5, 7, -3, 7, 5, 13))


@pytest.mark.parametrize(
    "region",
    [(20, 30, -3, 7, 5, 13), (2, 14, 8, 9, 5, 13), (2, 14, -3, 7, 0, 4), (6, 5, -3, 7, 5, 13)],
)
def test_extent_outside_the_grid_raises(region) -> None:
    with pytest.raises(SettingsError, match="lies outside the grid"):
        strided_geometry(SOURCE, (1, 1, 1), region)
    with pytest.raises(SettingsError, match="lies outside the grid"):
        resampled_geometry(SOURCE, (4, 4, 4), region)


def test_malformed_extent_raises() -> None:
    with pytest.raises(SettingsError, match="six values"):
        clip_extent(SOURCE.extent, (0, 1, 0, 1))


@pytest.mark.parametrize("dims", [(0, 4, 4), (4, 4), (4, -1, 4)])
def test_bad_dimensions_raise(dims) -> None:
    with pytest.raises(SettingsError, match="dimensions must be three integers >= 1"):
        resampled_geometry(SOURCE, dims)


def test_threads_setting_keeps_values_and_is_restored(model) -> None:
    before = torch.get_num_threads()
    one = run(model, SOURCE, threads=1)
    assert torch.get_num_threads() == before
    assert np.array_equal(run(model, SOURCE, threads=2), one)
    with pytest.raises(SettingsError, match="threads"):
        run(model, SOURCE, threads=-1)


def test_default_threads_are_shared_between_local_mpi_ranks(monkeypatch) -> None:
    from srnvtk.parallel import LOCAL_RANKS_VARIABLES, default_threads

    for name in (*LOCAL_RANKS_VARIABLES, "OMP_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(4)
        assert default_threads() == 4
        monkeypatch.setenv("OMPI_COMM_WORLD_LOCAL_SIZE", "3")
        assert default_threads() == 1  # 4 cores for 3 ranks
        monkeypatch.setenv("OMPI_COMM_WORLD_LOCAL_SIZE", "2")
        assert default_threads() == 2
        monkeypatch.setenv("OMP_NUM_THREADS", "4")  # the user chose: kept
        assert default_threads() == 4
        monkeypatch.delenv("OMP_NUM_THREADS")
        monkeypatch.setenv("OMPI_COMM_WORLD_LOCAL_SIZE", "not a number")
        monkeypatch.setenv("MPI_LOCALNRANKS", "8")
        assert default_threads() == 1
    finally:
        torch.set_num_threads(previous)


def test_bad_batch_points_raise(model) -> None:
    with pytest.raises(SettingsError, match="batch_points"):
        run(model, SOURCE, batch_points=0)


def test_bad_device_raises(model) -> None:
    with pytest.raises(SettingsError, match="device must be one of"):
        decode(SRNFile.of_model(model, SOURCE, VALUE_RANGE, "float32"), device="tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present: no fallback to test")
def test_cuda_falls_back_to_cpu_with_a_warning(model, full) -> None:
    with pytest.warns(RuntimeWarning, match="CUDA was requested but is not available"):
        values = decode(SRNFile.of_model(model, SOURCE, VALUE_RANGE, "float64"), device="cuda")
    close(values, full)


def test_auto_device_does_not_warn(model) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        decode(SRNFile.of_model(model, SOURCE, VALUE_RANGE, "float32"), strided_geometry(SOURCE, (4, 4, 4)),
               device="auto")
