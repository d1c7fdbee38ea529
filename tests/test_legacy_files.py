"""Reading the HDF5 .srn files of format versions 1-4 (srnvtk.legacy_hdf5): files written as srnvtk wrote them
(tests/legacy_writer.py), then damaged; every problem is a one-line FileFormatError naming the file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from legacy_writer import write_legacy_srn

from srnvtk.config import FVSRNConfig
from srnvtk.datasets import default_geometry, default_volume_values
from srnvtk.decode import decode
from srnvtk.errors import FileFormatError
from srnvtk.fileformat import READABLE_VERSIONS, SourceInfo, read_srn
from srnvtk.models import build_model
from srnvtk.quantize import apply_storage_precision
from srnvtk.volume import Geometry, Volume

SHAPE = (13, 11, 9)  # x, y, z point counts
MODEL = FVSRNConfig(grid_channels=4, grid_resolution=8, mlp_width=16, mlp_layers=2, fourier_features=2)


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> dict:
    """A version-3 file of an untrained model, and what its reader must decode."""
    geometry = Geometry((1, 13, -2, 8, 0, 8), (0.25, -3.0, 1.0), (0.5, 0.75, 1.25))
    volume = Volume(default_volume_values(SHAPE), geometry, "density")
    model = build_model(MODEL, geometry)
    stored = apply_storage_precision(model)
    source = SourceInfo("density", "uint8", geometry, (float(volume.values.min()), float(volume.values.max())))
    path = tmp_path_factory.mktemp("legacy") / "v3.srn"
    write_legacy_srn(path, MODEL, stored, source, {"psnr": 30.0, "steps": 30})
    return {"path": path, "reconstruction": decode(read_srn(path), device="cpu")}


@pytest.fixture
def good(tmp_path, written) -> Path:
    """A private copy of the written file, free to damage."""
    path = tmp_path / "copy.srn"
    shutil.copyfile(written["path"], path)
    return path


def expect_bad(path: Path, fragment: str) -> FileFormatError:
    with pytest.raises(FileFormatError, match=fragment) as info:
        read_srn(path)
    assert str(path) in str(info.value)
    return info.value


def test_a_version_3_file_reads(written) -> None:
    srn = read_srn(written["path"])
    assert srn.format_version == 3 and srn.model_config == MODEL and srn.source.array_name == "density"
    assert srn.stats["steps"] == 30 and default_geometry(SHAPE).dimensions == srn.source.geometry.dimensions


def test_foreign_hdf5_file(tmp_path) -> None:
    path = tmp_path / "foreign.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=np.arange(10))
        f.attrs["format"] = "something else"
    expect_bad(path, "lacks the srnvtk format marker")


def damage(path: Path, change) -> None:
    with h5py.File(path, "r+") as f:
        change(f)


def replace_dataset(f: h5py.File, name: str, data: np.ndarray, keep_attrs: bool = True) -> None:
    attrs = dict(f[name].attrs) if keep_attrs else {}
    del f[name]
    f.create_dataset(name, data=data)
    for key, value in attrs.items():
        f[name].attrs[key] = value


def _set_attr(obj, key, value) -> None:
    obj.attrs[key] = value


def _weights_layout_swapped(f: h5py.File) -> None:
    layout = json.loads(f["tensors/weights"].attrs["weights_layout"])
    layout[0][1] = layout[0][1][::-1]  # a transposed first layer: same size, wrong shape
    f["tensors/weights"].attrs["weights_layout"] = json.dumps(layout)


def _weights_with_nan(f: h5py.File) -> None:
    weights = f["tensors/weights"][()]
    weights[5] = np.nan
    replace_dataset(f, "tensors/weights", weights)


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda f: _set_attr(f, "format_version", np.int64(max(READABLE_VERSIONS) + 1)),
         f"format version {max(READABLE_VERSIONS) + 1} is not supported"),
        (lambda f: f.attrs.__delitem__("format_version"), "damaged or not a srnvtk file"),
        (lambda f: _set_attr(f, "architecture", "neurcomp9"), "unknown architecture 'neurcomp9'"),
        (lambda f: _set_attr(f, "model_config", "{not json"), "not valid JSON"),
        (lambda f: _set_attr(f, "model_config", json.dumps({"grid_channels": 4, "colour": 1})),
         "unknown FVSRNConfig settings: colour"),
        (lambda f: _set_attr(f, "model_config", json.dumps({"grid_channels": 0})), "grid_channels"),
        (lambda f: _set_attr(f["source"], "dtype", "complex64"), "unsupported array type 'complex64'"),
        (lambda f: _set_attr(f["source"], "extent", np.array([0, 4, 0, 4], dtype=np.int64)), "wrong number"),
        (lambda f: _set_attr(f["source"], "spacing", np.array([1.0, 0.0, 1.0])), "source geometry is invalid"),
        (lambda f: _set_attr(f["source"], "value_max", np.float64(-1e9)), "value range .* is empty"),
        (lambda f: replace_dataset(f, "tensors/grid", f["tensors/grid"][()][:-1]),
         "latent grid has the wrong type or shape"),
        (lambda f: replace_dataset(f, "tensors/grid", f["tensors/grid"][()][0]),
         "latent grid has the wrong type or shape"),
        (lambda f: replace_dataset(f, "tensors/grid", f["tensors/grid"][()].astype(np.float32)),
         "wrong type or shape"),
        (lambda f: replace_dataset(f, "tensors/grid_quant", f["tensors/grid_quant"][()][:, :-1]),
         "wrong type or shape"),
        (lambda f: replace_dataset(f, "tensors/weights", f["tensors/weights"][()][:-3]),
         "packed weights are shorter than their layout"),
        (lambda f: replace_dataset(f, "tensors/weights", np.concatenate([f["tensors/weights"][()],
                                                                         np.zeros(2, np.float16)])),
         "packed weights are longer than their layout"),
        (lambda f: replace_dataset(f, "tensors/weights", f["tensors/weights"][()], keep_attrs=False),
         "weights_layout"),
        (_weights_layout_swapped, "do not match the model's"),
        (_weights_with_nan, "NaN or infinite"),
        (lambda f: replace_dataset(f, "tensors/grid_quant", np.full_like(f["tensors/grid_quant"][()], np.inf)),
         "NaN or infinite"),
        (lambda f: f.__delitem__("tensors/weights"), "missing or unreadable tensor data"),
        (lambda f: f.__delitem__("source"), "damaged or not a srnvtk file"),
    ],
    ids=["version", "no-version", "architecture", "config-json", "config-key", "config-range", "dtype", "extent",
         "spacing", "value-range", "grid-channels", "grid-ndim", "grid-type", "quant-shape", "weights-short",
         "weights-long", "no-layout", "layout-shapes", "nan-weights", "inf-scale", "no-weights", "no-source"],
)
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_damaged_file(good, change, fragment) -> None:
    damage(good, change)
    expect_bad(good, fragment)


def test_corrupted_compressed_stream(good) -> None:
    """Bytes flipped inside the gzip stream of the grid codes: a clear error, not garbage values."""
    with h5py.File(good, "r") as f:
        chunk = f["tensors/grid"].id.get_chunk_info(0)
    data = bytearray(good.read_bytes())
    middle = chunk.byte_offset + chunk.size // 2
    data[middle:middle + 8] = bytes(255 - b for b in data[middle:middle + 8])
    good.write_bytes(bytes(data))
    expect_bad(good, "damaged or not a srnvtk file")


def test_damaged_copy_does_not_affect_the_original(written, good) -> None:
    damage(good, _weights_with_nan)
    read_srn(written["path"])  # still fine


def test_version_1_files_are_still_read(good, written) -> None:
    """Version 1: an unpruned fV-SRN without model_structure, pruning_config and pruned_fraction."""
    with h5py.File(good, "r+") as f:
        f.attrs["format_version"] = np.int64(1)
        for key in ("model_structure", "pruning_config"):
            del f.attrs[key]
        del f["stats"].attrs["pruned_fraction"]
    srn = read_srn(good)
    assert srn.format_version == 1 and srn.pruning.method == "none" and "pruned_fraction" not in srn.stats
    again = decode(srn, device="cpu")
    assert np.array_equal(again, written["reconstruction"])


def test_version_2_files_are_still_read(good, written) -> None:
    """Version 2: the same layout, settings without the wavelet grid's keys."""
    with h5py.File(good, "r+") as f:
        f.attrs["format_version"] = np.int64(2)
        settings = json.loads(f.attrs["model_config"])
        f.attrs["model_config"] = json.dumps({k: v for k, v in settings.items() if not k.startswith("wavelet")})
    srn = read_srn(good)
    assert srn.format_version == 2 and srn.model_config.wavelet is None
    again = decode(srn, device="cpu")
    assert np.array_equal(again, written["reconstruction"])


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda f: _set_attr(f, "model_structure", "{oops"), "model_structure is not valid JSON"),
        (lambda f: _set_attr(f, "model_structure", json.dumps({"grid_shape": [4, 4]})), "does not fit the settings"),
        (lambda f: _set_attr(f, "model_structure", json.dumps({"grid_shape": [3, 4, 5], "keep_shape": None})),
         "latent grid has the wrong type or shape"),
        (lambda f: _set_attr(f, "pruning_config", json.dumps({"method": "magic"})), "method must be one of"),
        (lambda f: _set_attr(f, "architecture", "neurcomp"), "unknown NeurcompConfig settings"),
    ],
    ids=["structure-json", "structure-shape", "structure-mismatch", "pruning-method", "architecture-mismatch"],
)
def test_damaged_version_2_attributes(good, change, fragment) -> None:
    damage(good, change)
    expect_bad(good, fragment)


