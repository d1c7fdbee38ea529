"""The .srn file: exact round trip, plain-h5py layout, atomic writes, every kind of bad file, size bounds."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

import srnvtk
from srnvtk.config import FVSRNConfig, TrainConfig
from srnvtk.datasets import default_geometry, default_volume_values
from srnvtk.decode import decode
from srnvtk.encoder import FILE_OVERHEAD_BYTES, compress, config_for_ratio, estimated_file_bytes
from srnvtk.errors import FileFormatError
from srnvtk.fileformat import FORMAT_VERSION, READABLE_VERSIONS, SourceInfo, read_srn, write_srn
from srnvtk.models import build_model
from srnvtk.quantize import apply_storage_precision
from srnvtk.volume import Geometry, Volume

SHAPE = (13, 11, 9)  # x, y, z point counts
MODEL = FVSRNConfig(grid_channels=4, grid_resolution=8, mlp_width=16, mlp_layers=2, fourier_features=2)
TRAIN = TrainConfig(steps=30, batch_size=2048, learning_rate=1e-2, seed=0, device="cpu")



@pytest.fixture(scope="module")
def volume() -> Volume:
    geometry = Geometry((1, 13, -2, 8, 0, 8), (0.25, -3.0, 1.0), (0.5, 0.75, 1.25))
    return Volume(default_volume_values(SHAPE), geometry, "density")


@pytest.fixture(scope="module")
def written(tmp_path_factory, volume) -> dict:
    """One real compress run with a file, shared by the module."""
    folder = tmp_path_factory.mktemp("srn")
    path = folder / "tiny.srn"
    result = compress(volume, model_config=MODEL, train_config=TRAIN, path=path)
    return {"path": path, "folder": folder, "result": result}


@pytest.fixture
def good(tmp_path, written) -> Path:
    """A private copy of the written file, free to damage."""
    path = tmp_path / "copy.srn"
    shutil.copyfile(written["path"], path)
    return path


def parts(config: FVSRNConfig, geometry: Geometry):
    """What write_srn needs, from an untrained model (its random grid is the worst case for gzip)."""
    model = build_model(config, geometry)
    stored = apply_storage_precision(model)
    source = SourceInfo("v", "float32", geometry, (0.0, 1.0))
    return stored, source


def write_small(path: Path) -> int:
    stored, source = parts(MODEL, default_geometry(SHAPE))
    return write_srn(path, MODEL, stored, source, {"psnr": 30.0})


def expect_bad(path: Path, fragment: str) -> FileFormatError:
    with pytest.raises(FileFormatError, match=fragment) as info:
        read_srn(path)
    assert str(path) in str(info.value)
    return info.value


# ---------------------------------------------------------------------------------------------
# Round trip


def test_read_back_decodes_exactly_to_the_reconstruction(written, volume) -> None:
    srn = read_srn(written["path"])
    rec = written["result"].reconstruction
    assert rec.dtype == volume.values.dtype and rec.shape == volume.values.shape
    again = decode(srn, device="cpu")
    assert again.dtype == rec.dtype
    assert np.abs(again.astype(np.float64) - rec.astype(np.float64)).max() == 0


def test_read_back_restores_settings_and_source(written, volume) -> None:
    srn = read_srn(written["path"])
    assert srn.model_config == MODEL
    assert srn.source.array_name == "density"
    assert srn.source.dtype == "uint8"
    assert srn.source.geometry == volume.geometry
    assert srn.source.value_range == (float(volume.values.min()), float(volume.values.max()))
    stats = written["result"].stats
    for key in ("psnr", "train_seconds", "steps", "final_loss", "file_bytes", "ratio"):
        assert srn.stats[key] == pytest.approx(stats[key]), key
    assert srn.stats["steps"] == TRAIN.steps
    assert set(srn.tensor_bytes) == {"grid", "grid_quant", "weights"}


def test_stats_record_the_real_size(written, volume) -> None:
    size = os.path.getsize(written["path"])
    result = written["result"]
    assert result.file_bytes == size
    assert result.stats["file_bytes"] == size
    assert result.stats["ratio"] == pytest.approx(4 * volume.values.size / size)
    with h5py.File(written["path"], "r") as f:
        assert int(f["stats"].attrs["file_bytes"]) == size
        assert float(f["stats"].attrs["ratio"]) == pytest.approx(4 * volume.values.size / size)


def test_no_temporary_file_is_left(written) -> None:
    assert sorted(p.name for p in written["folder"].iterdir()) == ["tiny.srn"]


# ---------------------------------------------------------------------------------------------
# Layout, readable with plain h5py


def test_layout_is_plain_hdf5(written, volume) -> None:
    with h5py.File(written["path"], "r") as f:
        assert f.attrs["format"] == "srnvtk"
        assert int(f.attrs["format_version"]) == FORMAT_VERSION
        assert f.attrs["architecture"] == "fvsrn"
        assert f.attrs["srnvtk_version"] == srnvtk.__version__
        assert json.loads(f.attrs["model_config"])["grid_channels"] == MODEL.grid_channels
        src = f["source"].attrs
        assert src["array_name"] == "density" and src["dtype"] == "uint8"
        assert tuple(src["extent"]) == volume.geometry.extent
        assert tuple(src["origin"]) == volume.geometry.origin
        assert tuple(src["spacing"]) == volume.geometry.spacing
        assert (float(src["value_min"]), float(src["value_max"])) == (volume.values.min(), volume.values.max())
        assert set(f["stats"].attrs) == {"psnr", "train_seconds", "steps", "final_loss", "file_bytes", "ratio",
                                         "pruned_fraction"}
        assert set(f["tensors"]) == {"grid", "grid_quant", "weights"}
        grid = f["tensors/grid"]
        assert grid.dtype == np.uint8 and grid.ndim == 4 and grid.shape[0] == MODEL.grid_channels
        assert grid.compression == "gzip"
        assert f["tensors/grid_quant"].dtype == np.float32
        assert f["tensors/grid_quant"].shape == (2, MODEL.grid_channels)
        weights = f["tensors/weights"]
        assert weights.dtype == np.float16 and weights.ndim == 1
        layout = json.loads(weights.attrs["weights_layout"])
        assert sum(int(np.prod(shape)) for _name, shape in layout) == weights.shape[0]
        assert all(name.startswith("mlp.") for name, _shape in layout)


def test_no_pickle_anywhere(written) -> None:
    package = Path(srnvtk.__file__).parent
    forbidden = re.compile(r"^\s*(import|from)\s+(pickle|dill|cloudpickle)\b|torch\.(load|save)\(|allow_pickle"
                           r"|np\.load\(", re.MULTILINE)
    for source in package.rglob("*.py"):
        assert not forbidden.search(source.read_text()), source
    kinds = []
    with h5py.File(written["path"], "r") as f:
        f.visititems(lambda _name, obj: kinds.append(obj.dtype.kind) if isinstance(obj, h5py.Dataset) else None)
    assert kinds and "O" not in kinds and "V" not in kinds


# ---------------------------------------------------------------------------------------------
# Atomic writes


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)], ids=["022", "027", "002"])
def test_permissions_follow_the_umask(tmp_path, umask, mode) -> None:
    old = os.umask(umask)
    try:
        write_small(tmp_path / "a.srn")
    finally:
        os.umask(old)
    assert (tmp_path / "a.srn").stat().st_mode & 0o777 == mode


class DiskFullError(OSError):
    pass


@pytest.mark.parametrize("fail_at", [1, 3, 5], ids=["first-dataset", "first-pass-end", "second-pass"])
@pytest.mark.parametrize("existing", [False, True], ids=["new", "replace"])
def test_failing_write_leaves_nothing(tmp_path, monkeypatch, fail_at, existing) -> None:
    target = tmp_path / "out.srn"
    if existing:
        target.write_bytes(b"the previous file")
    calls = []
    create_dataset = h5py.Group.create_dataset

    def failing(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == fail_at:
            raise DiskFullError("no space left on device")
        return create_dataset(self, *args, **kwargs)

    monkeypatch.setattr(h5py.Group, "create_dataset", failing)
    with pytest.raises(DiskFullError):
        write_small(target)
    assert len(calls) == fail_at
    if existing:
        assert sorted(p.name for p in tmp_path.iterdir()) == ["out.srn"]
        assert target.read_bytes() == b"the previous file"
    else:
        assert list(tmp_path.iterdir()) == []


def test_interrupted_write_leaves_nothing(tmp_path, monkeypatch) -> None:
    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_small(tmp_path / "out.srn")
    assert list(tmp_path.iterdir()) == []


def test_write_into_missing_folder_fails_clearly(tmp_path) -> None:
    with pytest.raises(FileFormatError, match="does not exist"):
        write_small(tmp_path / "nowhere" / "out.srn")
    assert list(tmp_path.iterdir()) == []


def test_overwrite_replaces_the_file(tmp_path) -> None:
    target = tmp_path / "out.srn"
    target.write_bytes(b"old")
    size = write_small(target)
    assert os.path.getsize(target) == size
    assert read_srn(target).model_config == MODEL


# ---------------------------------------------------------------------------------------------
# Bad files


def test_missing_file(tmp_path) -> None:
    expect_bad(tmp_path / "missing.srn", "no such .srn file")
    expect_bad(tmp_path, "no such .srn file")  # a folder is not a file


@pytest.mark.parametrize("keep", [0, 8, 100, 1000, 0.5, -200, -1])
def test_truncated_file(good, keep) -> None:
    data = good.read_bytes()
    cut = int(len(data) * keep) if isinstance(keep, float) else (keep if keep >= 0 else len(data) + keep)
    good.write_bytes(data[:cut])
    expect_bad(good, "truncated, corrupted or not a srnvtk file")


@pytest.mark.parametrize("content", [b"", b"hello world\n", bytes(np.random.default_rng(0).integers(0, 256, 4096,
                                                                                                    dtype=np.uint8))])
def test_garbage_file(tmp_path, content) -> None:
    path = tmp_path / "garbage.srn"
    path.write_bytes(content)
    expect_bad(path, "truncated, corrupted or not a srnvtk file")


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
        (lambda f: f.attrs.__delitem__("format_version"), "truncated, corrupted or not a srnvtk file"),
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
        (lambda f: f.__delitem__("source"), "truncated, corrupted or not a srnvtk file"),
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
    expect_bad(good, "truncated, corrupted or not a srnvtk file")


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
    assert np.array_equal(again, written["result"].reconstruction)


def test_version_2_files_are_still_read(good, written) -> None:
    """Version 2: the same layout, settings without the wavelet grid's keys."""
    with h5py.File(good, "r+") as f:
        f.attrs["format_version"] = np.int64(2)
        settings = json.loads(f.attrs["model_config"])
        f.attrs["model_config"] = json.dumps({k: v for k, v in settings.items() if not k.startswith("wavelet")})
    srn = read_srn(good)
    assert srn.format_version == 2 and srn.model_config.wavelet is None
    again = decode(srn, device="cpu")
    assert np.array_equal(again, written["result"].reconstruction)


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


# ---------------------------------------------------------------------------------------------
# Size estimates used to size models for a target ratio

SIZE_CASES = [
    (FVSRNConfig(grid_channels=4, grid_resolution=4, mlp_width=8, mlp_layers=1, fourier_features=0), (12, 12, 12)),
    (FVSRNConfig(grid_channels=4, grid_resolution=8, mlp_width=16, mlp_layers=2, fourier_features=2), (20, 16, 12)),
    (FVSRNConfig(grid_channels=8, grid_resolution=16, mlp_width=32, mlp_layers=4, fourier_features=4), (64, 48, 32)),
    (FVSRNConfig(grid_channels=16, grid_resolution=24, mlp_width=32, mlp_layers=4, fourier_features=4), (20, 20, 20)),
    (FVSRNConfig(grid_channels=16, grid_resolution=24, mlp_width=64, mlp_layers=6, fourier_features=8), (96, 64, 40)),
    (FVSRNConfig(grid_channels=12, grid_resolution=20, mlp_width=16, mlp_layers=3, fourier_features=1), (9, 40, 17)),
    # Grids whose sizes h5py's guessed chunks did not divide: the padded edge chunks made noise-like
    # codes (as an untrained grid has) bigger than the estimate before the grid got one chunk per channel.
    (FVSRNConfig(grid_channels=8, grid_resolution=23, mlp_width=16, mlp_layers=2, fourier_features=2), (64, 64, 64)),
    (FVSRNConfig(grid_channels=16, grid_resolution=23, mlp_width=16, mlp_layers=2, fourier_features=2), (64, 64, 64)),
    (FVSRNConfig(grid_channels=32, grid_resolution=31, mlp_width=16, mlp_layers=2, fourier_features=2), (64, 40, 24)),
]


@pytest.mark.parametrize(("config", "shape"), SIZE_CASES, ids=lambda v: "x".join(map(str, v)) if isinstance(v, tuple)
                         else f"c{v.grid_channels}r{v.grid_resolution}w{v.mlp_width}")
def test_estimate_bounds_the_real_size(tmp_path, config, shape) -> None:
    geometry = default_geometry(shape)
    stored, source = parts(config, geometry)
    size = write_srn(tmp_path / "a.srn", config, stored, source, {})
    estimate = estimated_file_bytes(config, geometry)
    assert size <= estimate
    # ...and not by a silly margin: the HDF5 overhead allowance is the only slack.
    assert estimate - size < FILE_OVERHEAD_BYTES


@pytest.mark.parametrize(("ratio", "shape"), [(8.0, (40, 40, 40)), (20.0, (64, 64, 48)), (50.0, (128, 96, 64))])
def test_config_for_ratio_stays_within_budget(tmp_path, ratio, shape) -> None:
    geometry = default_geometry(shape)
    base = FVSRNConfig(grid_channels=8, mlp_width=16, mlp_layers=2, fourier_features=2)
    config = config_for_ratio(ratio, geometry, base)
    budget = 4 * geometry.num_points / ratio
    stored, source = parts(config, geometry)
    size = write_srn(tmp_path / "a.srn", config, stored, source, {})
    assert size <= budget
    # It is the largest such grid by the estimate, and it kept the other settings.
    bigger = FVSRNConfig(**{**config.__dict__, "grid_resolution": config.grid_resolution + 1})
    assert estimated_file_bytes(bigger, geometry) > budget
    assert (config.grid_channels, config.mlp_width, config.fourier_features) == (8, 16, 2)


def test_config_for_ratio_rejects_impossible_ratios() -> None:
    from srnvtk.errors import SettingsError

    geometry = default_geometry((12, 12, 12))
    with pytest.raises(SettingsError, match="too few for even the smallest model"):
        config_for_ratio(50.0, geometry)
    with pytest.raises(SettingsError, match="must be > 1"):
        config_for_ratio(1.0, geometry)
