"""The .srn file (format 5): exact round trip, layout, atomic writes, every kind of bad file, size bounds.

Legacy HDF5 files (versions 1-4): tests/test_legacy_files.py, test_legacy_samples.py, test_hostile_files.py."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

import srnvtk
from srnvtk.config import FVSRNConfig, TrainConfig
from srnvtk.container import Container, Encoded, pack
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


def write_small(path: Path, stats: dict | None = None) -> int:
    stored, source = parts(MODEL, default_geometry(SHAPE))
    return write_srn(path, MODEL, stored, source, {"psnr": 30.0} if stats is None else stats)


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


def test_the_size_does_not_depend_on_the_stats(tmp_path) -> None:
    sizes = set()
    for stats in ({}, {"psnr": float("inf")}, {"psnr": 12.345678901234567, "steps": 10**9, "final_loss": 1e-300}):
        sizes.add(write_small(tmp_path / "s.srn", stats))
    assert len(sizes) == 1
    assert read_srn(tmp_path / "s.srn").stats["steps"] == 10**9
    write_small(tmp_path / "s.srn", {"psnr": float("inf")})
    assert read_srn(tmp_path / "s.srn").stats["psnr"] == float("inf")


def test_stats_record_the_real_size(written, volume) -> None:
    size = os.path.getsize(written["path"])
    result = written["result"]
    assert result.file_bytes == size
    assert result.stats["file_bytes"] == size
    assert result.stats["ratio"] == pytest.approx(4 * volume.values.size / size)
    srn = read_srn(written["path"])  # measured by the reader, not stored
    assert srn.stats["file_bytes"] == size and srn.stats["ratio"] == pytest.approx(4 * volume.values.size / size)


def test_no_temporary_file_is_left(written) -> None:
    assert sorted(p.name for p in written["folder"].iterdir()) == ["tiny.srn"]


# ---------------------------------------------------------------------------------------------
# Layout


def test_layout(written, volume) -> None:
    container = Container.open(written["path"])
    assert container.version == FORMAT_VERSION and FORMAT_VERSION in READABLE_VERSIONS
    assert "grid_bits" not in container.header["model_config"]  # 8-bit codes: what version-5 readers know
    header = container.header
    assert header["format"] == "srnvtk" and header["srnvtk_version"] == srnvtk.__version__
    assert header["architecture"] == "fvsrn" and header["model_config"]["grid_channels"] == MODEL.grid_channels
    src = header["source"]
    assert src["array_name"] == "density" and src["dtype"] == "uint8"
    assert tuple(src["extent"]) == volume.geometry.extent
    assert tuple(src["origin"]) == volume.geometry.origin and tuple(src["spacing"]) == volume.geometry.spacing
    assert tuple(src["value_range"]) == (volume.values.min(), volume.values.max())
    stats_section, names = header["stats"]
    assert names == ["psnr", "train_seconds", "steps", "final_loss", "pruned_fraction"]
    assert container.sections[stats_section].raw_length == 8 * len(names)  # fixed: sizes never depend on stats
    tensors = header["tensors"]
    assert set(tensors) == {"grid", "grid_quant", "weights"}
    section, dtype, shape = tensors["grid"]
    assert dtype == "|u1" and len(shape) == 4 and shape[0] == MODEL.grid_channels
    stored = container.sections[section]
    assert stored.codec & 7 in (0, 1, 2) and stored.length <= stored.raw_length  # never larger than raw
    assert tensors["grid_quant"][1:] == ["<f4", [2, MODEL.grid_channels]]
    section, dtype, shape = tensors["weights"]
    assert dtype == "<f2" and len(shape) == 1 and container.sections[section].codec == 0  # raw: size by count
    layout = header["layouts"]["weights"]
    assert sum(int(np.prod(shape)) for _name, shape in layout) == tensors["weights"][2][0]
    assert all(name.startswith("mlp.") for name, _shape in layout)
    # What the file costs beyond its tensors: the container, the header and the section table.
    overhead = container.size - sum(section.length for section in container.sections)
    assert overhead < 1024, overhead


def test_no_pickle_anywhere() -> None:
    package = Path(srnvtk.__file__).parent
    forbidden = re.compile(r"^\s*(import|from)\s+(pickle|dill|cloudpickle)\b|torch\.(load|save)\(|allow_pickle"
                           r"|np\.load\(", re.MULTILINE)
    for source in package.rglob("*.py"):
        assert not forbidden.search(source.read_text()), source


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


@pytest.mark.parametrize("existing", [False, True], ids=["new", "replace"])
def test_failing_write_leaves_nothing(tmp_path, monkeypatch, existing) -> None:
    target = tmp_path / "out.srn"
    if existing:
        target.write_bytes(b"the previous file")

    def failing(_fd):
        raise DiskFullError("no space left on device")

    monkeypatch.setattr(os, "fsync", failing)
    with pytest.raises(DiskFullError):
        write_small(target)
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
    expect_bad(good, "damaged or not a srnvtk file")


@pytest.mark.parametrize("content", [b"", b"hello world\n", bytes(np.random.default_rng(0).integers(0, 256, 4096,
                                                                                                    dtype=np.uint8))])
def test_garbage_file(tmp_path, content) -> None:
    path = tmp_path / "garbage.srn"
    path.write_bytes(content)
    expect_bad(path, "damaged or not a srnvtk file")


def rewrite(path: Path, change) -> None:
    """Change the header of a format-5 file and write it back with valid checksums, as a crafted file would be:
    change(header) edits the dict in place, or returns (header, sections) to replace the sections too."""
    container = Container.open(path)
    data = path.read_bytes()
    sections = [Encoded(data[s.offset:s.offset + s.length], s.codec, s.raw_length) for s in container.sections]
    header = container.header
    changed = change(header)
    if changed is not None:
        header, sections = changed
    path.write_bytes(pack(container.version, header, sections))


def _tensor(header: dict, name: str, index: int, value) -> None:
    header["tensors"][name][index] = value


def _raw_grid(header: dict, sections_of, grid_codes: bytes, shape) -> tuple:
    return header, sections_of(grid_codes, shape)


def _set(mapping: dict, key: str, value) -> None:
    mapping[key] = value


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda h: _set(h, "format", "other"), "lacks the srnvtk format marker"),
        (lambda h: _set(h, "colour", 1), "unknown keys"),
        (lambda h: h.pop("tensors") and None, "lacks"),
        (lambda h: _set(h, "architecture", "neurcomp9"), "architecture must be one of"),
        (lambda h: _set(h, "architecture", 7), "not a name"),
        (lambda h: _set(h["model_config"], "colour", 1), "unknown FVSRNConfig settings: colour"),
        (lambda h: _set(h["model_config"], "grid_channels", 0), "grid_channels"),
        (lambda h: _set(h, "pruning_config", {"method": "magic"}), "method must be one of"),
        (lambda h: _set(h["source"], "dtype", "complex64"), "complex64"),
        (lambda h: _set(h["source"], "extent", [0, 4, 0, 4]), "extent"),
        (lambda h: _set(h["source"], "extent", [0, 4.5, 0, 4, 0, 4]), "extent"),
        (lambda h: _set(h["source"], "extent", [0, 2e62, 0, 4, 0, 4]), "extent"),
        (lambda h: _set(h["source"], "spacing", [1.0, 0.0, 1.0]), "spacing"),
        (lambda h: _set(h["source"], "spacing", [1.0, -1.0, 1.0]), "spacing"),
        (lambda h: _set(h["source"], "origin", [1.0, "far", 1.0]), "origin"),
        (lambda h: _set(h["source"], "value_range", [1.0, -1e9]), "value range"),
        (lambda h: _set(h["source"], "value_range", [-1e308, 1e308]), "value range"),
        (lambda h: _set(h["source"], "array_name", 'a"/><b'), "array name"),
        (lambda h: _set(h["structure"], "grid_shape", [3, 4]), "does not fit the settings"),
        (lambda h: _set(h["structure"], "grid_shape", [512, 512, 512]), "stored entries"),
        (lambda h: _tensor(h, "grid", 1, "<f4"), "the settings call for"),
        (lambda h: _tensor(h, "grid", 2, [4, 1, 1, 1]), "the settings call for"),
        (lambda h: _tensor(h, "grid", 0, 99), "names section 99"),
        (lambda h: _tensor(h, "weights", 0, h["tensors"]["grid"][0]), "used twice|its shape needs"),
        (lambda h: h["tensors"].pop("grid_quant") and None, "the settings call for"),
        (lambda h: _set(h["layouts"], "weights", h["layouts"]["weights"][::-1][:-1]), "weights_layout"),
        (lambda h: _set(h["layouts"], "weights", "not a list"), "weights_layout"),
        (lambda h: _set(h, "stats", [1, 2]), "stats are not described"),
        (lambda h: _set(h, "stats", [h["tensors"]["grid"][0], h["stats"][1]]), "stats section .* wrong size"),
    ],
    ids=["format", "unknown-key", "no-tensors", "architecture", "architecture-type", "config-key", "config-range",
         "pruning-method", "dtype", "extent-length", "extent-fraction", "extent-huge", "spacing-zero",
         "spacing-negative", "origin-text", "value-range-empty", "value-range-huge", "array-name", "structure-shape",
         "grid-claim", "grid-dtype", "grid-shape", "section-missing", "section-twice", "no-quant",
         "layout-shapes", "layout-type", "stats-type", "stats-section"],
)
def test_crafted_header(good, change, fragment) -> None:
    rewrite(good, change)
    expect_bad(good, fragment)


def test_a_section_whose_size_disagrees_with_its_tensor(good) -> None:
    def shorter_weights(header):
        container = Container.open(good)
        data = good.read_bytes()
        sections = [Encoded(data[s.offset:s.offset + s.length], s.codec, s.raw_length) for s in container.sections]
        index = header["tensors"]["weights"][0]
        sections[index] = Encoded(sections[index].data[:-2], 0, sections[index].raw_length - 2)
        return header, sections

    rewrite(good, shorter_weights)
    expect_bad(good, "has .* bytes, its shape needs")


def test_non_finite_weights_are_refused(good) -> None:
    def nan_weights(header):
        container = Container.open(good)
        data = good.read_bytes()
        sections = [Encoded(data[s.offset:s.offset + s.length], s.codec, s.raw_length) for s in container.sections]
        index = header["tensors"]["weights"][0]
        weights = np.frombuffer(sections[index].data, dtype="<f2").copy()
        weights[3] = np.nan
        sections[index] = Encoded(weights.tobytes(), 0, weights.nbytes)
        return header, sections

    rewrite(good, nan_weights)
    expect_bad(good, "NaN or infinite")


@pytest.mark.parametrize("where", ["header", "table", "grid", "weights"])
def test_flipped_bytes_are_found_by_the_checksums(good, where) -> None:
    container = Container.open(good)
    offsets = {"header": 30, "table": container.sections[0].offset - 5,
               "grid": container.sections[container.header["tensors"]["grid"][0]].offset + 3,
               "weights": container.sections[container.header["tensors"]["weights"][0]].offset + 7}
    data = bytearray(good.read_bytes())
    data[offsets[where]] ^= 0x01
    good.write_bytes(bytes(data))
    expect_bad(good, "damaged or not a srnvtk file .*checksum mismatch")


def test_a_newer_version_is_refused_by_name(good) -> None:
    container = Container.open(good)
    data = good.read_bytes()
    sections = [Encoded(data[s.offset:s.offset + s.length], s.codec, s.raw_length) for s in container.sections]
    newer = max(READABLE_VERSIONS) + 1
    good.write_bytes(pack(newer, container.header, sections))
    expect_bad(good, f"format version {newer} is not supported")


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
    # ...and not by a silly margin: the container's allowance is the only slack (codes are counted raw).
    assert estimate - size < FILE_OVERHEAD_BYTES + stored.arrays["grid"].nbytes


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
