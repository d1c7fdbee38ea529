"""Files of many networks (format 6, srnvtk.multipart): fields x time steps x bricks, written and read back,
decoded (bricks blended, pieces reading only their bricks), described, and refused when damaged or crafted."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from srn_editing import edit

from srnvtk.config import FVSRNConfig, NeurcompConfig, PruningConfig, TrainConfig
from srnvtk.container import ENTRY, Container
from srnvtk.datasets import default_geometry, default_volume_values
from srnvtk.decode import decode, resampled_geometry, strided_geometry
from srnvtk.errors import FileFormatError, SettingsError
from srnvtk.fileformat import SRNFile, read_srn, write_parts
from srnvtk.fileinfo import file_info
from srnvtk.metrics import psnr
from srnvtk.multipart import MULTIPART_VERSION
from srnvtk.parts import BrickLayout, FieldInfo, PartData, blend_weights, brick_geometry
from srnvtk.quantize import apply_storage_precision
from srnvtk.train import train
from srnvtk.volume import Volume

SHAPE = (20, 16, 12)  # x, y, z
GRID = default_geometry(SHAPE)
TRAIN = TrainConfig(steps=60, batch_size=1024, learning_rate=1e-2, device="cpu")
FVSRN = FVSRNConfig(grid_channels=4, grid_resolution=6, mlp_width=12, mlp_layers=2, fourier_features=2)
LAYOUT = BrickLayout((10, 8, 6), 2)


def trained_part(values: np.ndarray, value_range, config, field=0, step=0, brick=None, pruning=None):
    extent = GRID.extent if brick is None else LAYOUT.extent(GRID, brick)
    geometry = brick_geometry(GRID, extent)
    block = values[extent[4]:extent[5] + 1, extent[2]:extent[3] + 1, extent[0]:extent[1] + 1]
    result = train(Volume(np.ascontiguousarray(block), geometry, "v"), config, TRAIN, pruning=pruning,
                   value_range=value_range)
    stored = apply_storage_precision(result.model)
    part = PartData(field, step, brick, result.model.config, pruning or PruningConfig(), stored,
                    {"steps": result.steps, "psnr": 20.0 + step})
    return part, result.model


@pytest.fixture(scope="module")
def series(tmp_path_factory) -> dict:
    """Two fields (fV-SRN and clustered Neurcomp) at three time steps, one network each."""
    base = default_volume_values(SHAPE)
    fields = [FieldInfo("density", "uint8", 1, ((0.0, 255.0),)), FieldInfo("energy", "float32", 1, ((-1.0, 3.0),))]
    parts, models = [], {}
    for step in range(3):
        shifted = np.roll(base, step, axis=2)
        density, (model_a) = trained_part(shifted, (0.0, 255.0), FVSRN, 0, step)
        energy_values = (shifted.astype(np.float32) / 64.0) - 1.0
        energy, model_b = trained_part(energy_values, (-1.0, 3.0), NeurcompConfig(width=10, blocks=2,
                                                                                   weight_clusters=8), 1, step)
        parts += [density, energy]
        models[0, step], models[1, step] = model_a, model_b
    path = tmp_path_factory.mktemp("series") / "series.srn"
    write_parts(path, GRID, [0.0, 0.5, 1.25], fields, parts)
    return {"path": path, "models": models, "fields": fields}


@pytest.fixture(scope="module")
def bricked(tmp_path_factory) -> dict:
    values = default_volume_values(SHAPE)
    parts = [trained_part(values, (0.0, 255.0), FVSRN, brick=b)[0] for b in LAYOUT.indices(GRID)]
    path = tmp_path_factory.mktemp("bricks") / "bricks.srn"
    write_parts(path, GRID, [0.0], [FieldInfo("density", "uint8", 1, ((0.0, 255.0),))], parts, LAYOUT)
    return {"path": path, "values": values, "parts": parts}


def test_series_round_trip(series) -> None:
    srn = read_srn(series["path"])
    assert srn.format_version == MULTIPART_VERSION and srn.model is None and srn.times == (0.0, 0.5, 1.25)
    assert [f.name for f in srn.fields] == ["density", "energy"] and srn.fields[1].dtype == "float32"
    assert len(srn.parts) == 6 and srn.sections_read == 0  # nothing read before a part is asked for
    for (field, step), model in series["models"].items():
        info = series["fields"][field]
        expected = decode(SRNFile.of_model(model, GRID, info.value_ranges[0], info.dtype), device="cpu")
        got = decode(srn, field=field, step=step, device="cpu")
        assert got.dtype == np.dtype(info.dtype) and np.array_equal(got, expected), (field, step)
        part = srn.parts_of(field, step)[0]
        assert part.stats["psnr"] == 20.0 + step and part.stats["steps"] == TRAIN.steps
    assert srn.sections_read == 3 * 2 + 3 * 1  # fV-SRN parts: coded + raw sections; Neurcomp: raw only


def test_asking_for_a_field_or_step_the_file_lacks(series) -> None:
    srn = read_srn(series["path"])
    with pytest.raises(SettingsError, match="no field 2 .*density, energy"):
        decode(srn, field=2)
    with pytest.raises(SettingsError, match="no time step 3"):
        decode(srn, step=3)


def test_bricks_blend_into_one_continuous_volume(bricked) -> None:
    srn = read_srn(bricked["path"])
    full = decode(srn, device="cpu")
    assert srn.sections_read == 2 * len(LAYOUT.indices(GRID))
    assert psnr(bricked["values"], full, 255.0) > 15.0
    # strided and resampled grids read the same bricks; a strided grid is exactly a slice of the full one
    np.testing.assert_array_equal(decode(srn, strided_geometry(GRID, (2, 3, 2)), device="cpu"), full[::2, ::3, ::2])
    assert decode(srn, resampled_geometry(GRID, (7, 5, 9)), device="cpu").shape == (9, 5, 7)


def test_a_piece_reads_only_the_bricks_it_meets(bricked) -> None:
    full = decode(read_srn(bricked["path"]), device="cpu")
    srn = read_srn(bricked["path"])
    inside = (0, 5, 0, 4, 0, 2)  # within brick (0, 0, 0) and away from its neighbours' halos
    np.testing.assert_array_equal(decode(srn, strided_geometry(GRID, (1, 1, 1), inside), device="cpu"),
                                  full[0:3, 0:5, 0:6])
    assert srn.sections_read == 2
    across = (7, 12, 0, 4, 0, 2)  # across the x border of bricks (0, 0, 0) and (1, 0, 0)
    np.testing.assert_array_equal(decode(srn, strided_geometry(GRID, (1, 1, 1), across), device="cpu"),
                                  full[0:3, 0:5, 7:13])
    assert srn.sections_read == 4


def test_blend_weights_sum_to_one_and_vanish_outside() -> None:
    grid = (0, 29)
    layout = BrickLayout((10, 10, 10), 3)
    points = np.arange(-2, 33, 0.5)
    total = np.zeros_like(points)
    for i in range(3):
        core = (10 * i, 10 * i + 9)
        weights = blend_weights(points, core, grid, layout.halo)
        extent = (max(core[0] - 3, 0), min(core[1] + 3, 29))
        inside = (points >= grid[0]) & (points <= grid[1])
        assert np.all(weights[inside & ((points < extent[0] - 0.5) | (points > extent[1] + 0.5))] == 0)
        total += weights
    inside = (points >= 0) & (points <= 29)
    np.testing.assert_allclose(total[inside], 1.0)
    assert np.all(np.diff(blend_weights(np.arange(4.0, 17.0), (10, 19), grid, 3)) >= 0)  # rises across the overlap


def test_brick_layout_geometry() -> None:
    layout = BrickLayout((8, 8, 8), 1)
    grid = default_geometry((20, 8, 9))
    assert layout.counts(grid) == (3, 1, 2)
    assert layout.core(grid, (2, 0, 1)) == (16, 19, 0, 7, 8, 8)
    assert layout.extent(grid, (1, 0, 0)) == (7, 16, 0, 7, 0, 8)
    with pytest.raises(SettingsError, match="brick layout"):
        BrickLayout((8, 8, 1), 0)
    with pytest.raises(SettingsError, match="brick layout"):
        BrickLayout((8, 8, 8), 5)


def test_per_brick_bookkeeping_is_small(tmp_path) -> None:
    """Beyond its parameters a brick costs its two table entries and its entry in the deflated header: measured
    as the file's bytes outside its sections, less the fixed part, per brick, for 64 bricks."""
    small = BrickLayout((5, 4, 3), 1)
    config = FVSRNConfig(grid_channels=2, grid_resolution=3, mlp_width=4, mlp_layers=1, fourier_features=0)
    field = [FieldInfo("v", "uint8", 1, ((0.0, 255.0),))]

    def overhead(bricks: list, layout: BrickLayout | None) -> int:
        parts = []
        for brick in bricks:
            geometry = brick_geometry(GRID, GRID.extent if brick is None else layout.extent(GRID, brick))
            volume = Volume(np.zeros(geometry.shape_zyx, np.float32), geometry, "v")
            model = train(volume, config, TrainConfig(steps=1, device="cpu"), value_range=(0.0, 1.0)).model
            parts.append(PartData(0, 0, brick, config, PruningConfig(), apply_storage_precision(model)))
        path = tmp_path / "o.srn"
        write_parts(path, GRID, [0.0], field, parts, layout)
        container = Container.open(path)
        return container.size - sum(s.length for s in container.sections)

    bricks = small.indices(GRID)  # 4 x 4 x 4
    assert len(bricks) == 64
    fixed = overhead([None], None)  # one whole-grid part: the container, the header's fixed part, one part
    per_brick = (overhead(bricks, small) - fixed) / (len(bricks) - 1)
    assert 2 * ENTRY.size < per_brick < 64, per_brick
    assert fixed < 2048, fixed


def test_info_lists_fields_steps_and_bricks(series, bricked) -> None:
    info = file_info(series["path"])
    assert info["format_version"] == MULTIPART_VERSION and info["times"] == [0.0, 0.5, 1.25]
    assert [f["name"] for f in info["fields"]] == ["density", "energy"] and info["bricks"] is None
    assert [(p["field"], p["step"]) for p in info["parts"]] == [(f, s) for s in range(3) for f in
                                                                ("density", "energy")]
    assert all(p["bytes"] > 0 for p in info["parts"])
    info = file_info(bricked["path"])
    assert info["bricks"] == {"size": [10, 8, 6], "halo": 2, "counts": [2, 2, 2]}
    assert sorted(tuple(p["brick"]) for p in info["parts"]) == sorted(LAYOUT.indices(GRID))


def _part_entry(index: int, position: int, value):
    def change(header: dict) -> None:
        header["parts"][index][position] = value
    return change


@pytest.mark.parametrize(("change", "fragment"), [
    (lambda h: h.__setitem__("times", [0.0, 0.0, 1.0]), "do not increase"),
    (lambda h: h.__setitem__("times", []), "finite numbers"),
    (lambda h: h["fields"][0].__setitem__(2, 2), "components"),
    (lambda h: h["fields"][1].__setitem__(0, "density"), "same name"),
    (lambda h: h["fields"][0].__setitem__(0, "a<b"), "array name"),
    (lambda h: h["fields"][0][3].__setitem__(0, [5.0, 1.0]), "value range"),
    (_part_entry(0, 0, 7), "names a field, step or settings"),
    (_part_entry(0, 1, 3), "names a field, step or settings"),
    (_part_entry(0, 3, 9), "names a field, step or settings"),
    (_part_entry(0, 2, [0, 0, 0]), "names a brick"),
    (_part_entry(1, 6, 1), "used by two parts|has .* bytes"),
    (_part_entry(0, 4, {"grid_shape": [100, 100, 100], "keep_shape": None}), "stored entries|bytes"),
    (lambda h: h["parts"].pop() and None, "not covered|sections no part names"),
    (lambda h: h.__setitem__("parts", h["parts"] + h["parts"][:1]), "two parts for field 0"),
    (lambda h: h.__setitem__("extra", 1), "unknown keys"),
    (lambda h: h.__setitem__("bricks", [[4, 4, 1], 0]), "brick layout"),
], ids=["times-order", "times-empty", "components", "field-names", "field-name", "value-range", "field-index",
        "step-index", "settings-index", "brick-without-layout", "section-twice", "structure-claim", "coverage",
        "duplicate", "unknown-key", "brick-size"])
def test_crafted_headers_are_refused(series, tmp_path, change, fragment) -> None:
    path = tmp_path / "crafted.srn"
    path.write_bytes(series["path"].read_bytes())
    edit(path, header=change)
    with pytest.raises(FileFormatError, match=fragment):
        read_srn(path)


def test_flipped_bytes_in_a_part_are_found_when_it_is_read(bricked, tmp_path) -> None:
    path = tmp_path / "flipped.srn"
    data = bytearray(bricked["path"].read_bytes())
    container = Container.open(bricked["path"])
    last = container.sections[-1]
    data[last.offset + last.length // 2] ^= 0x40
    path.write_bytes(bytes(data))
    srn = read_srn(path)  # the header and table are intact
    first = decode(srn, strided_geometry(GRID, (1, 1, 1), (0, 5, 0, 4, 0, 2)), device="cpu")
    assert first.shape == (3, 5, 6)
    with pytest.raises(FileFormatError, match="checksum mismatch in section"):
        decode(srn, device="cpu")


def test_every_combination_of_fields_and_steps_decodes(series) -> None:
    srn = read_srn(series["path"])
    for field, step in itertools.product(range(2), range(3)):
        assert decode(srn, strided_geometry(GRID, (4, 4, 4)), field=field, step=step, device="cpu").shape == (3, 4, 5)
