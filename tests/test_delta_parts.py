"""Delta parts (format 11, srnvtk.delta): a series encoded with time scheme "delta" decodes to what the encoder
evaluated, fits its budget, keeps its key frames; a reader refuses references that would not end or not fit."""

from __future__ import annotations

import dataclasses
import io
import json
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest

from srnvtk.config import EncodeConfig, EncoderSettings, FVSRNConfig, TrainConfig
from srnvtk.container import write_atomically
from srnvtk.datasets import default_geometry
from srnvtk.decode import decode
from srnvtk.delta import DELTA_LIMIT, DeltaGrid, delta_codes, keep_largest, reconstruct
from srnvtk.errors import FileFormatError
from srnvtk.fileformat import read_srn
from srnvtk.fileinfo import file_info
from srnvtk.metrics import psnr
from srnvtk.models import build_model
from srnvtk.multipart import DELTA_VECTOR_VERSION, DELTA_VERSION, compact_head, encode_part
from srnvtk.parts import FieldInfo, PartData
from srnvtk.quantize import GRID_QUANT, WEIGHTS, StoredModel, apply_storage_precision, storage_tensors
from srnvtk.series import series_from_arrays
from srnvtk.series_data import generate_series
from srnvtk.series_delta import UNIT_SCALES, delta_bytes, delta_candidates
from srnvtk.series_encode import (
    DELTA_SHARE,
    delta_weighted_parts,
    encode_series,
    is_key_frame,
    part_budget,
    reference_of,
)

SHAPE = (16, 14, 12)
STEPS = 4
RATIO = 4.0
MODEL = FVSRNConfig(grid_channels=4, grid_resolution=6, mlp_width=12, mlp_layers=2, fourier_features=2)
TRAIN = TrainConfig(steps=40, batch_size=512, seed=0, device="cpu", threads=1)


@pytest.fixture(scope="module")
def steps() -> list:
    return list(generate_series(SHAPE, STEPS, seed=1))


def encoded(steps, path: Path, key_interval: int, arrays=("density", "temperature")):
    series = series_from_arrays(default_geometry(SHAPE), [t for t, _ in steps], [a for _, a in steps])
    settings = EncoderSettings(encode=EncodeConfig(ratio=RATIO, architecture="fvsrn", time_scheme="delta",
                                                   key_interval=key_interval), fvsrn=MODEL, train=TRAIN)
    return encode_series(series, settings, arrays=list(arrays), path=path)


@pytest.fixture(scope="module")
def keyed(steps, tmp_path_factory) -> tuple:
    path = tmp_path_factory.mktemp("delta") / "keyed.srn"
    return encoded(steps, path, key_interval=2), path


def test_decoded_steps_are_what_the_encoder_evaluated(keyed, steps) -> None:
    result, path = keyed
    srn = read_srn(path)
    assert srn.format_version == DELTA_VERSION
    for part in result.parts:
        field = [f.name for f in srn.fields].index(part.field)
        low, high = srn.fields[field].value_ranges[0]
        decoded = decode(srn, field=field, step=part.step, device="cpu")
        assert psnr(steps[part.step][1][part.field], decoded, high - low) == pytest.approx(part.stats["psnr"],
                                                                                           abs=1e-9)


def test_the_file_fits_the_ratio_and_keeps_its_key_frames(keyed) -> None:
    result, path = keyed
    assert path.stat().st_size == result.file_bytes <= result.float32_bytes / RATIO
    srn = read_srn(path)
    for part in srn.parts:
        key = is_key_frame(part.step, 2)
        assert (part.reference is None) == key
        if not key:
            other = srn.parts[part.reference]
            assert (other.field, other.step) == (part.field, part.step - 1)
    assert [p.delta for p in result.parts] == [not is_key_frame(p.step, 2) for p in result.parts]
    # every delta part keeps some of its differences (the steps differ; a share that keeps none is a bug)
    assert all(p.stats["pruned_fraction"] < 1.0 for p in result.parts if p.delta)


def test_key_frames_get_the_bytes_the_deltas_leave() -> None:
    """A delta part's share is DELTA_SHARE of a key frame's; together they use what equal shares would."""
    equal = part_budget(10**6, 10.0, 2 * 5)
    weighted = delta_weighted_parts(2, 5, key_interval=2)  # key frames at steps 0, 2, 4
    key = part_budget(10**6, 10.0, weighted)
    assert weighted == pytest.approx(2 * (3 + 2 * DELTA_SHARE))
    assert key > equal and DELTA_SHARE * key < equal
    assert 2 * (3 * key + 2 * DELTA_SHARE * key) == pytest.approx(10 * equal, rel=1e-4)


def test_a_step_far_from_its_key_frame_builds_its_chain_once(steps, tmp_path) -> None:
    path = tmp_path / "chain.srn"
    encoded(steps, path, key_interval=0, arrays=("density",))
    srn = read_srn(path)
    assert [p.reference for p in srn.parts] == [None, 0, 1, 2]
    last = decode(srn, step=3, device="cpu")
    assert srn.sections_read == 4  # the whole chain, each part once
    decode(srn, step=2, device="cpu")
    assert srn.sections_read == 4  # cached on the way
    np.testing.assert_array_equal(decode(read_srn(path), step=3, device="cpu"), last)
    info = file_info(path)
    assert [p["delta_of"] for p in info["parts"]] == [None] + [{"part": i, "step": i, "key_step": 0}
                                                               for i in range(3)]


def test_a_reader_with_a_small_cache_forgets_old_networks_and_rebuilds_them(steps, tmp_path) -> None:
    path = tmp_path / "cache.srn"
    encoded(steps, path, key_interval=0, arrays=("density",))
    expected = [decode(read_srn(path), step=s, device="cpu") for s in range(STEPS)]
    srn = read_srn(path)
    srn.cache_bytes = 1  # keeps only the newest network
    for step in range(STEPS):  # forwards: each step needs only the one before, just built
        np.testing.assert_array_equal(decode(srn, step=step, device="cpu"), expected[step])
    assert srn.sections_read == STEPS and len(srn._models) == 1
    np.testing.assert_array_equal(decode(srn, step=1, device="cpu"), expected[1])
    assert srn.sections_read == STEPS + 2  # step 1 was forgotten: its chain (steps 0, 1) read again


def test_the_reconstruction_is_reference_plus_kept_codes() -> None:
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(2, 3, 3, 3)).astype(np.float32)
    unit = np.array([0.01, 0.02], dtype=np.float32)
    target = reference + rng.normal(scale=0.5, size=reference.shape).astype(np.float32)
    codes = delta_codes(target, reference, unit)
    assert codes.dtype == np.int8 and np.abs(codes.astype(int)).max() <= DELTA_LIMIT
    kept = keep_largest(codes, 10)
    assert np.count_nonzero(kept) == 10 and np.abs(kept).min() == 0
    assert np.abs(kept[kept != 0]).min() >= np.sort(np.abs(codes.reshape(-1)))[-10]
    grid = reconstruct(reference, DeltaGrid(codes, unit))
    small = np.abs(target - reference) < DELTA_LIMIT * unit[:, None, None, None]
    assert np.all(np.abs(grid - target)[small] <= unit.max() / 2 + 1e-6)


def test_a_vector_series_of_deltas_is_format_12_and_format_11_ones_still_read(steps, tmp_path, monkeypatch) -> None:
    """Format 12 keeps a vector part's PSNR per component in its record; a format-11 file with a vector field (as
    written before format 12: its records keep only STORED_STATS) still reads to the same values."""
    import srnvtk.multipart as multipart

    new = tmp_path / "v12.srn"
    result = encoded(steps[:2], new, key_interval=0, arrays=("velocity",))
    srn = read_srn(new)
    assert srn.format_version == DELTA_VECTOR_VERSION and srn.parts[1].reference == 0
    for part, made in zip(srn.parts, result.parts, strict=True):
        assert part.stats["psnr_magnitude"] == pytest.approx(made.stats["psnr_magnitude"], rel=1e-6)
    old_layout = {DELTA_VERSION: (multipart.DELTA_RECORD, multipart.STORED_STATS)}
    with monkeypatch.context() as patch:  # the format-11 writer: vectors too, the shorter record
        patch.setattr(multipart, "DELTA_VECTOR_VERSION", DELTA_VERSION)
        patch.setattr(multipart, "index_record", lambda version: old_layout[version])
        old = tmp_path / "v11.srn"
        encoded(steps[:2], old, key_interval=0, arrays=("velocity",))
    srn_old = read_srn(old)
    assert srn_old.format_version == DELTA_VERSION and old.stat().st_size == new.stat().st_size - 2 * 16
    assert "psnr_magnitude" not in srn_old.parts[1].stats
    np.testing.assert_array_equal(decode(srn_old, step=1, device="cpu"), decode(srn, step=1, device="cpu"))


def test_a_tight_share_tries_coarser_steps_that_keep_more_differences() -> None:
    rng = np.random.default_rng(2)
    reference = rng.normal(size=(3, 8, 8, 8)).astype(np.float32)
    unit = np.array([0.01, 0.02, 0.015], dtype=np.float32)
    latent = reference + rng.normal(scale=0.1, size=reference.shape).astype(np.float32)
    weights = bytes(200)
    assert len(delta_candidates(latent, reference, unit, weights, None)) == 1  # no share: every difference
    whole = delta_bytes(weights, delta_candidates(latent, reference, unit, weights, None)[0])
    assert len(delta_candidates(latent, reference, unit, weights, whole)) == 1
    share = whole // 3
    candidates = delta_candidates(latent, reference, unit, weights, share)
    assert len(candidates) == len(UNIT_SCALES)
    for scale, candidate in zip(UNIT_SCALES, candidates, strict=True):
        np.testing.assert_allclose(candidate.unit, unit * scale, rtol=1e-6)
        assert delta_bytes(weights, candidate) <= share
    kept = [np.count_nonzero(c.codes) for c in candidates]
    assert kept == sorted(kept) and kept[-1] > kept[0]


def test_every_delta_of_a_chain_counts_in_its_key_frames_unit() -> None:
    """The next reference's unit is the key frame's quantization scale, never a delta's coarser step (so steps
    cannot compound along a chain)."""
    key, delta = _parts([MODEL])
    key_unit = key.stored.arrays[GRID_QUANT][0]
    model = build_model(MODEL, default_geometry(SHAPE))
    first = reference_of(0, key, model, None)
    np.testing.assert_array_equal(first.unit, key_unit)
    delta.delta = DeltaGrid(delta.delta.codes, (3.0 * key_unit).astype(np.float32))
    np.testing.assert_array_equal(reference_of(1, delta, model, first).unit, key_unit)


# --------------------------------------------------------------------------------------------------------------
# hostile references: built from untrained networks, so no training is needed


def _parts(configs: list[FVSRNConfig], fields: int = 1) -> list[PartData]:
    """Step 0 of every field a full part, then step 1 of every field a delta of its step 0 (zero codes)."""
    geometry = default_geometry(SHAPE)
    parts = []
    for field in range(fields):
        model = build_model(configs[0], geometry)
        parts.append(PartData(field, 0, None, model.config, dataclasses.replace(TRAIN_PRUNING),
                              apply_storage_precision(model)))
    for field in range(fields):
        config = configs[-1]
        model = build_model(config, geometry)
        stored = storage_tensors(model)
        weights = StoredModel({WEIGHTS: stored.arrays[WEIGHTS]}, stored.layout, model.structure())
        codes = np.zeros((config.grid_channels, *model.structure()["grid_shape"]), dtype=np.int8)
        parts.append(PartData(field, 1, None, model.config, TRAIN_PRUNING, weights, {}, field,
                              DeltaGrid(codes, np.ones(config.grid_channels, dtype=np.float32))))
    return parts


TRAIN_PRUNING = EncoderSettings().pruning


def _write(path: Path, parts: list[PartData], references: dict[int, int], fields: int = 1) -> Path:
    geometry = default_geometry(SHAPE)
    infos = [FieldInfo(f"f{i}", "float32", 1, ((0.0, 1.0),)) for i in range(fields)]
    encoded_parts = [encode_part(p, geometry) for p in parts]
    entries = [dataclasses.replace(e.entry, reference=references.get(i, e.entry.reference))
               for i, e in enumerate(encoded_parts)]
    head = compact_head(geometry, [0.0, 1.0], infos, None, entries)
    write_atomically(path, b"".join([head, *(e.data for e in encoded_parts)]))
    return path


def test_a_well_formed_delta_file_reads(tmp_path) -> None:
    srn = read_srn(_write(tmp_path / "ok.srn", _parts([MODEL], 2), {}, 2))
    assert [p.reference for p in srn.parts] == [None, None, 0, 1]
    np.testing.assert_array_equal(decode(srn, field=1, step=1, device="cpu").shape, SHAPE[::-1])


@pytest.mark.parametrize(("references", "fields", "fragment"), [
    ({2: 7}, 2, "part 2 is a delta of part 7, which the file does not have"),
    ({2: 2}, 2, "part 2 is a delta of part 2, which is itself"),
    ({2: 1}, 2, "it must be the same field's previous step"),  # another field
    ({0: 2, 2: 0}, 2, "it must be the same field's previous step"),  # a cycle through a later step
])
def test_bad_references_are_refused_in_one_line(tmp_path, references, fields, fragment) -> None:
    parts = _parts([MODEL], fields)
    if 0 in references:  # a full part cannot be a delta: make the cycle of two delta parts
        parts[0] = _parts([MODEL], fields)[2]
        parts[0] = dataclasses.replace(parts[0], step=0)
    path = _write(tmp_path / "bad.srn", parts, references, fields)
    with pytest.raises(FileFormatError, match="^[^\n]*$") as caught:
        read_srn(path)
    assert fragment in str(caught.value)


def test_a_delta_of_another_grid_shape_is_refused(tmp_path) -> None:
    bigger = dataclasses.replace(MODEL, grid_resolution=8)
    path = _write(tmp_path / "shape.srn", _parts([MODEL, bigger]), {})
    with pytest.raises(FileFormatError, match="whose latent grid has another shape"):
        read_srn(path)


def test_a_full_part_cannot_be_marked_as_a_delta(tmp_path) -> None:
    parts = _parts([MODEL])
    path = _write(tmp_path / "full.srn", [parts[0], dataclasses.replace(parts[0], step=1)], {1: 0})
    with pytest.raises(FileFormatError, match="section has"):
        read_srn(path)


# --------------------------------------------------------------------------------------------------------------
# the command line


def test_cli_compresses_with_deltas_and_decompresses_a_step(steps, tmp_path) -> None:
    from srnvtk.cli import main
    from srnvtk.series import write_series
    from srnvtk.vtkio import read_vti

    pvd = tmp_path / "in.pvd"
    write_series(pvd, default_geometry(SHAPE), [t for t, _ in steps[:3]], [a for _, a in steps[:3]])
    out = tmp_path / "out.srn"
    fast = ("--grid-channels", "4", "--mlp-width", "12", "--mlp-layers", "2",
            "--fourier-features", "2", "--steps", "30", "--batch-size", "512", "--device", "cpu", "--threads", "1")

    def run(*args) -> tuple[int, str, str]:
        stdout, stderr = io.StringIO(), io.StringIO()
        with redirect_stdout(stdout), redirect_stderr(stderr):
            code = main([str(a) for a in args])
        return code, stdout.getvalue(), stderr.getvalue()

    code, _, err = run("compress", pvd, out, "--arrays", "density", "--arch", "fvsrn", "--ratio", RATIO,
                       "--time-scheme", "delta", "--key-interval", "2", *fast)
    assert code == 0, err
    assert "stored as grid deltas (key frames: every 2 steps)" in err
    srn = read_srn(out)
    assert srn.format_version == DELTA_VERSION and [p.reference for p in srn.parts] == [None, 0, None]
    code, _, err = run("decompress", out, tmp_path / "s1.vti", "--step", 1, "--quiet")
    assert code == 0, err
    from vtkmodules.util.numpy_support import vtk_to_numpy

    values = vtk_to_numpy(read_vti(str(tmp_path / "s1.vti")).GetPointData().GetArray("density"))
    np.testing.assert_array_equal(values.reshape(SHAPE[::-1]), decode(srn, step=1, device="cpu"))
    code, stdout, _ = run("info", out)
    assert code == 0 and "delta of part 0 (step 0; key frame step 0)" in stdout and "key frame" in stdout
    code, stdout, _ = run("info", out, "--json")
    assert json.loads(stdout)["parts"][1]["delta_of"] == {"part": 0, "step": 0, "key_step": 0}
