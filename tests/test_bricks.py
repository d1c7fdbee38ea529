"""Bricks (srnvtk.bricks), bricked files (format 9, srnvtk.multipart) and the brick compressor on one process
(srnvtk.distributed): layout, blending, seeds, ownership, file size budget, reading only the bricks a piece needs.

Tiny volumes and a few training steps: the tests check plumbing and exact equalities, not quality."""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pytest

from srnvtk.bricks import (
    brick_budgets,
    brick_complexity,
    brick_seed,
    bricks_meeting,
    layout_for,
    point_indices,
)
from srnvtk.config import BrickConfig, EncodeConfig, EncoderSettings, FVSRNConfig, TrainConfig
from srnvtk.datasets import default_field, default_volume_values
from srnvtk.decode import decode
from srnvtk.distributed import assign_bricks, compress_bricks, piece_extent
from srnvtk.errors import InputError, SettingsError
from srnvtk.fileformat import read_srn
from srnvtk.fileinfo import file_info
from srnvtk.metrics import psnr
from srnvtk.multipart import COMPACT_VERSION, PART_BOOKKEEPING_BYTES
from srnvtk.parts import BrickLayout, blend_weights
from srnvtk.sources import VolumeSource, open_nrrd, write_nrrd
from srnvtk.volume import Geometry, Volume

GRID = Geometry((0, 23, 0, 19, 0, 17), (0.5, -1.0, 2.0), (0.1, 0.2, 0.1))
MODEL = FVSRNConfig(grid_channels=4, grid_resolution=6, mlp_width=16, mlp_layers=2, fourier_features=2)
TRAIN = TrainConfig(steps=15, batch_size=2048, device="cpu", threads=1)
SETTINGS = EncoderSettings(fvsrn=MODEL, train=TRAIN)


@pytest.fixture(scope="module")
def volume() -> Volume:
    return Volume(default_volume_values(GRID.dimensions, seed=2), GRID, "density")


@pytest.fixture(scope="module")
def compressed(volume, tmp_path_factory) -> dict:
    """One serial bricked compression of the tiny volume: 8 bricks of 12 with a halo of 2."""
    path = tmp_path_factory.mktemp("bricks") / "tiny.srn"
    run = compress_bricks(VolumeSource(volume), SETTINGS, brick_size=12, halo=2, path=path, keep_reconstruction=True)
    return {"path": path, "run": run}


# ---------------------------------------------------------------------------------------------------------------
# layout and blending


def test_layout_cores_tile_the_grid_and_halos_overlap():
    layout = BrickLayout((10, 8, 7), halo=2)
    assert layout.counts(GRID) == (3, 3, 3)
    covered = np.zeros(GRID.shape_zyx, dtype=int)
    for brick in layout.indices(GRID):
        core, extent = layout.core(GRID, brick), layout.extent(GRID, brick)
        covered[core[4]:core[5] + 1, core[2]:core[3] + 1, core[0]:core[1] + 1] += 1
        for a in range(3):  # the halo on every side that has a neighbour, clipped at the grid's faces
            assert extent[2 * a] == max(core[2 * a] - 2, 0)
            assert extent[2 * a + 1] == min(core[2 * a + 1] + 2, GRID.extent[2 * a + 1])
    assert (covered == 1).all()
    assert layout.indices(GRID)[:2] == [(0, 0, 0), (1, 0, 0)]  # x fastest
    assert layout.core(GRID, (2, 2, 2)) == (20, 23, 16, 19, 14, 17)  # the last bricks take what is left


@pytest.mark.parametrize(("size", "halo"), [(10, 0), (10, 3), (7, 2), (12, 6)])
def test_blend_weights_sum_to_one_everywhere(size, halo):
    """A partition of unity at lattice points and between them (resampled grids), continuous across borders."""
    grid = Geometry((3, 40, 0, 1, 0, 1))
    layout = BrickLayout((size, size, size), halo)
    points = np.linspace(3, 40, 371)
    total = np.zeros_like(points)
    for i in range(layout.counts(grid)[0]):
        core = layout.core(grid, (i, 0, 0))
        weights = blend_weights(points, (core[0], core[1]), (3, 40), halo)
        extent = layout.extent(grid, (i, 0, 0))
        assert (weights[(points < extent[0] - 0.5) | (points > extent[1] + 0.5)] == 0).all()  # within its network
        total += weights
    np.testing.assert_allclose(total, 1.0, atol=1e-12)
    if halo:  # linear ramps: no jump anywhere
        core = layout.core(grid, (1, 0, 0))
        weights = blend_weights(points, (core[0], core[1]), (3, 40), halo)
        assert np.abs(np.diff(weights)).max() <= (points[1] - points[0]) / (2 * halo) + 1e-12


def test_layout_for_refuses_bricks_too_thin_to_train():
    layout_for(GRID, 12, 0)  # 24 = 2 x 12, 20 = 12 + 8, 18 = 12 + 6
    with pytest.raises(SettingsError, match="brick of 1 point along x"):
        layout_for(GRID, 23, 0)
    assert layout_for(GRID, 23, 1).counts(GRID) == (2, 1, 1)  # a halo gives the 1-point core a neighbour's point
    with pytest.raises(SettingsError, match="halo"):
        layout_for(GRID, 8, 5)
    with pytest.raises(SettingsError, match="at least 4"):
        BrickConfig(brick_size=3)
    auto = BrickConfig()
    assert auto.size_for((256, 256, 256)) == 0 and auto.size_for((64, 64, 64), ranks=2) == 32
    assert auto.size_for((512, 512, 300)) == 256  # one rank: the largest bricks
    assert auto.size_for((512, 512, 512), ranks=16) == 128  # 8 bricks of 256 are too few for 16 ranks
    assert BrickConfig(brick_size=16).size_for((8, 8, 8)) == 16


def test_bricks_meeting_a_piece():
    layout = BrickLayout((12, 12, 12), 2)
    piece = Geometry((0, 9, 0, 9, 0, 9), GRID.origin, GRID.spacing)
    assert bricks_meeting(GRID, layout, piece) == [(0, 0, 0)]
    piece = Geometry((0, 10, 0, 5, 0, 5), GRID.origin, GRID.spacing)  # reaches the blend zone of brick (1, 0, 0)
    assert bricks_meeting(GRID, layout, piece) == [(0, 0, 0), (1, 0, 0)]
    # a resampled output: fractional indices
    fine = Geometry((0, 46, 0, 0, 0, 0), GRID.origin, (0.05, 0.2, 0.1))
    np.testing.assert_allclose(point_indices(GRID, fine, 0), np.arange(47) / 2)


def test_brick_seeds_depend_on_the_seed_and_index_only():
    seeds = {brick_seed(0, b) for b in itertools.product(range(4), repeat=3)}
    assert len(seeds) == 64 and all(0 <= s < 2**31 for s in seeds)
    assert brick_seed(0, (1, 2, 3)) == brick_seed(0, (1, 2, 3)) != brick_seed(1, (1, 2, 3))


def test_assign_bricks_gives_every_rank_one_box():
    for counts, ranks in [((4, 4, 4), 2), ((3, 3, 2), 2), ((5, 3, 2), 3), ((8, 8, 8), 7), ((2, 2, 1), 4)]:
        owners = assign_bricks(counts, ranks)
        flat = [b for bricks in owners for b in bricks]
        assert sorted(flat) == sorted(itertools.product(*(range(c) for c in counts)))  # each brick once
        for bricks in owners:
            box = [sorted({b[a] for b in bricks}) for a in range(3)]
            assert len(bricks) == math.prod(len(v) for v in box)  # a box, no holes
            assert all(v == list(range(v[0], v[-1] + 1)) for v in box)
        sizes = [len(b) for b in owners]
        assert max(sizes) - min(sizes) <= max(sizes) // 2
    assert [len(b) for b in assign_bricks((3, 3, 2), 2)] == [9, 9]
    assert [] in assign_bricks((2, 1, 1), 3)  # a rank without a brick: the driver refuses this
    layout = BrickLayout((12, 12, 12), 2)
    assert piece_extent(GRID, layout, [(0, 0, 0), (1, 0, 0)]) == (0, 23, 0, 13, 0, 13)


def test_budgets_follow_points_and_complexity():
    assert brick_budgets(1000, [10, 30]) == [250, 750]
    rng = np.random.default_rng(0)
    assert brick_complexity(np.full((8, 8, 8), 3.0), (0.0, 1.0)) == 0.0
    noisy = rng.random((2, 5, 9))  # thinner than a block along z: blocks shrink to fit
    assert 0.2 < brick_complexity(noisy, (0.0, 1.0)) < 0.4
    assert brick_complexity(noisy * 10, (0.0, 10.0)) == pytest.approx(brick_complexity(noisy, (0.0, 1.0)), rel=1e-5)
    flat, busy = brick_budgets(1000, [10, 10], [0.1, 0.4], gamma=1.0)
    assert busy == 4 * flat and flat + busy <= 1000


# ---------------------------------------------------------------------------------------------------------------
# the compressor, the file and the reader


def test_bricked_file_reads_back_what_the_encoder_measured(compressed, volume):
    run, path = compressed["run"], compressed["path"]
    srn = read_srn(path)
    assert srn.format_version == COMPACT_VERSION and srn.bricks == BrickLayout((12, 12, 12), 2)
    assert len(srn.parts) == 8 and srn.sections_read == 0  # the header and index only
    whole = decode(srn, device="cpu")
    assert whole.dtype == np.uint8
    np.testing.assert_array_equal(whole, run.reconstruction)
    value_range = float(volume.values.max()) - float(volume.values.min())
    assert srn.stats["psnr"] == pytest.approx(psnr(volume.values, whole, value_range))
    assert run.stats["file_bytes"] == path.stat().st_size == srn.stats["file_bytes"]
    assert srn.stats["steps"] == 8 * TRAIN.steps
    for part in srn.parts:  # each brick's record: its steps and its core's PSNR
        assert part.stats["steps"] == TRAIN.steps and 0 < part.stats["psnr"] < 100


def test_a_piece_reads_only_its_bricks(compressed):
    srn = read_srn(compressed["path"])
    piece = Geometry((0, 9, 0, 9, 0, 9), GRID.origin, GRID.spacing)
    values = decode(srn, piece, device="cpu")
    assert srn.sections_read == 1  # brick (0, 0, 0) alone
    np.testing.assert_array_equal(values, compressed["run"].reconstruction[:10, :10, :10])
    srn = read_srn(compressed["path"])
    strip = Geometry((0, 23, 13, 13, 4, 4), GRID.origin, GRID.spacing)  # y 13: in the overlap of two brick rows
    decode(srn, strip, device="cpu")
    assert srn.sections_read == 4


def test_lean_container_size_budget(compressed):
    """Fixed overhead under 2 kB, bookkeeping under 64 bytes per brick besides its parameters."""
    srn = read_srn(compressed["path"])
    tensors = sum(part.stored_bytes for part in srn.parts)
    fixed = compressed["path"].stat().st_size - tensors - len(srn.parts) * PART_BOOKKEEPING_BYTES
    assert PART_BOOKKEEPING_BYTES < 64
    assert 0 < fixed < 2048
    info = file_info(compressed["path"])
    assert info["bytes"]["fixed"] == fixed and len(info["parts"]) == 8 and info["bricks"]["counts"] == [2, 2, 2]
    assert srn.sections_read == 0  # info reads the index only


def test_ratio_target_fits_the_budget(volume, tmp_path):
    settings = dataclasses.replace(SETTINGS, encode=EncodeConfig(ratio=6.0))
    run = compress_bricks(VolumeSource(volume), settings, brick_size=12, halo=2, path=tmp_path / "r.srn")
    budget = 4 * GRID.num_points / 6.0
    assert 0.85 * budget < run.file_bytes <= budget


def test_ratio_200_for_a_64_cube(tmp_path):
    """Rate control shrinks the MLP (about 9 kB in fp16 at its defaults) to fit a 5,242-byte file."""
    from srnvtk.ratecontrol import compress_to_ratio

    geometry = Geometry((0, 63, 0, 63, 0, 63))
    volume = Volume(default_volume_values((64, 64, 64)), geometry, "density")
    result = compress_to_ratio(volume, 200, train_config=TrainConfig(steps=20, batch_size=2048, device="cpu"),
                               path=tmp_path / "r200.srn")
    assert result.file_bytes <= 4 * 64**3 // 200 and result.stats["ratio"] >= 200


def test_bad_input_is_refused_before_any_file(tmp_path, volume):
    values = volume.values.astype(np.float32)
    values[15, 3, 20] = np.nan
    source = VolumeSource(Volume(values, GRID, "density"))
    with pytest.raises(InputError, match=r"NaN .* brick \(1, 0, 1\)"):
        compress_bricks(source, SETTINGS, brick_size=12, halo=2, path=tmp_path / "nan.srn")
    flat = VolumeSource(Volume(np.full(GRID.shape_zyx, 3.0, np.float32), GRID, "density"))
    with pytest.raises(InputError, match="constant"):
        compress_bricks(flat, SETTINGS, brick_size=12, halo=2, path=tmp_path / "flat.srn")
    with pytest.raises(SettingsError, match="brick of 1 point"):
        compress_bricks(source, SETTINGS, brick_size=23, halo=0, path=tmp_path / "thin.srn")
    assert not list(tmp_path.iterdir())


def test_a_constant_brick_trains(tmp_path):
    """Bricks train on the whole volume's range, so a brick of one value is no error."""
    values = default_volume_values(GRID.dimensions, seed=2).astype(np.float32)
    values[:, :, :12] = 7.0
    run = compress_bricks(VolumeSource(Volume(values, GRID, "v")), SETTINGS, brick_size=12, halo=0,
                          keep_reconstruction=True)
    assert np.isfinite(run.stats["psnr"])


# ---------------------------------------------------------------------------------------------------------------
# streamed input


def test_nrrd_streams_sub_extents(tmp_path):
    field = default_field((21, 18, 13), 1)
    geometry = Geometry((0, 20, 0, 17, 0, 12), (0.0, 1.0, 2.0), (0.5, 0.5, 0.25))
    write_nrrd(tmp_path / "v.nrrd", "float32", geometry, (field[z:z + 5] for z in range(0, 13, 5)))
    source = open_nrrd(tmp_path / "v.nrrd")
    assert (source.geometry, source.dtype, source.name) == (geometry, "float32", "v")
    np.testing.assert_array_equal(source.read((3, 10, 2, 17, 4, 9)), field[4:10, 2:18, 3:11])
    np.testing.assert_array_equal(source.read(geometry.extent), field)
    with pytest.raises(SettingsError, match="not inside"):
        source.read((0, 21, 0, 1, 0, 1))
    # a detached header naming a big-endian raw file
    (tmp_path / "raw.bin").write_bytes(field.astype(">f4").tobytes())
    (tmp_path / "d.nhdr").write_text("NRRD0004\ntype: float\ndimension: 3\nsizes: 21 18 13\nencoding: raw\n"
                                     "endian: big\nspacings: 1 2 3\ndata file: raw.bin\n\n")
    detached = open_nrrd(tmp_path / "d.nhdr")
    assert detached.geometry.spacing == (1.0, 2.0, 3.0)
    np.testing.assert_array_equal(detached.read((0, 20, 0, 17, 5, 5)), field[5:6])


@pytest.mark.parametrize(("header", "message"), [
    ("NRRD0004\ntype: float\ndimension: 3\nsizes: 4 4 4\nencoding: gzip\n\n", "gzip"),
    ("NRRD0004\ntype: float\ndimension: 4\nsizes: 3 4 4 4\nencoding: raw\n\n", "dimension 4"),
    ("NRRD0004\ntype: float\ndimension: 3\nsizes: 40 4 4\nencoding: raw\n\n", "shorter"),
    ("NRRD0004\ntype: block\ndimension: 3\nsizes: 4 4 4\nencoding: raw\n\n", "type"),
    ("P5 4 4 255\n", "not a NRRD"),
])
def test_nrrd_errors_say_why(tmp_path, header, message):
    path = tmp_path / "bad.nrrd"
    path.write_bytes(header.encode() + bytes(4 * 64))
    with pytest.raises(InputError, match=message):
        open_nrrd(path)
