"""The committed sample files, one per format version (tests/data/formats/v1.srn ... v4.srn: HDF5; v5.srn and
v7.srn: the container; v8.srn: the container with an error bound; v6.srn: many networks), keep reading, and keep
decoding to the values recorded here, in every later srnvtk; also inside ParaView's Python.

The files were made once by tests/data/formats/make_samples.py and must never be regenerated: their hashes are
checked, so a changed file fails here rather than silently moving the goalposts.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from srnvtk.decode import decode, resampled_geometry
from srnvtk.fileformat import read_srn

FORMATS = Path(__file__).resolve().parent / "data" / "formats"
# per file: sha256, architecture, pruning method, structure, and the decoded 8^3 grid over the file's bounds
# (float32): mean, std, min, max and the values at [0, 0, 0], [3, 4, 5], [7, 7, 7] ([z, y, x])
EXPECTED = {
    "v1": ("142854cbcd07eda618f2346271b52494671407e57c3dd764fbb749f72aedf1ef", "fvsrn", "none",
           {"grid_shape": [4, 5, 6], "keep_shape": None},
           (113.5038, 86.9216, -7.1267, 245.0931, 196.8745, 156.4417, 12.9235)),
    "v2": ("43565da88d86be71335793a2d5fa1136f2c952e78787280763d17b5005441aa2", "fvsrn", "binary",
           {"grid_shape": [4, 5, 6], "keep_shape": [1, 4, 5, 6]},
           (114.4161, 86.9629, -8.5122, 244.6991, 207.8983, 152.7943, 17.4791)),
    "v3": ("b4fc2c94efda51ab4e887221d4426dfeb0af4b9085f6916d9b52a6cca24d9bb0", "fvsrn", "smallify",
           {"grid_shape": [6, 7, 8], "keep_shape": [4, 6, 7, 8], "wavelet_levels": [1, 1, 1]},
           (115.2162, 86.2644, -23.338, 254.2142, 212.4224, 147.3676, 13.3354)),
    "v4": ("72b04593b46165af105076fc312b6f7eaad726e8ea2eb6e804248c36b56a734d", "neurcomp", "none",
           {"widths": [10, 10, 10, 10, 10], "clustered_layers": [1, 2, 3, 4]},
           (93.2663, 58.8656, -21.0291, 176.9534, 156.1329, 133.0575, 17.448)),
    "v5": ("13409c2515c3d0b84fd110b29dbdd2238a694f514fac806bb3a4bf5b74d9c33f", "fvsrn", "variational",
           {"grid_shape": [6, 7, 8], "keep_shape": [1, 6, 7, 8], "wavelet_levels": [2, 2, 3]},
           (114.2674, 86.0356, -16.3853, 237.4738, 204.2756, 124.8401, 6.9787)),
    "v7": ("e68b88f24c5eb25a60abff38f8e9d5ce63c5f02d766f6f1803ef5d002f0fd7fc", "fvsrn", "none",
           {"grid_shape": [6, 7, 8], "keep_shape": None},
           (115.7927, 85.8229, -5.5965, 250.5313, 204.4425, 136.4969, 11.2302)),
    "v8": ("5a74b6b4bf88c4dc75d7a591cfabe8dd89430a42faa8530ef96c595fa6770cfd", "fvsrn", "none",
           {"grid_shape": [7, 8, 10], "keep_shape": [1, 7, 8, 10]},
           (113.8747, 86.8689, -5.2459, 238.3209, 196.6841, 178.2014, 10.5773)),
}
# Formats 6 and 11 (many networks): sha256, time values, parts (field, step, brick), and per time step the decoded 8^3
# grid's statistics as above. The 8^3 grid's points fall between the source points: within half a point outside a
# brick's extent its weight is small but not zero, so that blended values stay continuous there (the file is
# unchanged; the values were first recorded with the brick's weight cut off at its extent).
SERIES = {
    "v6": ("cefadc36d3e4009c4d53892a0d9fca29f88a390e3e7e0443404c48536825bf7a", (0.0, 0.25),
           [(0, 0, (0, 0, 0)), (0, 0, (1, 0, 0)), (0, 1, (0, 0, 0)), (0, 1, (1, 0, 0))],
           [(113.1767, 86.3707, -2.3328, 239.3562, 202.0587, 140.2528, 14.0385),
            (113.153, 85.8267, -4.3949, 228.0569, 203.1107, 222.7261, 7.9075)]),
    # format 11 (delta parts): the generated density, whose values lie in [1, 3]
    "v11": ("a2c8b1a34cdd08bcb59aedf48c43366a3d67b4d8850437e3524c41d340a85824", (1.2, 1.3, 1.4),
            [(0, 0, None), (0, 1, None), (0, 2, None)],
            [(2.0006, 0.9436, 0.6931, 3.3948, 2.9708, 3.1143, 0.9895),
             (2.007, 0.9471, 0.8067, 3.3209, 2.9659, 3.161, 0.9707),
             (2.0069, 0.9515, 0.7417, 3.3166, 2.952, 3.1232, 0.9622)]),
}
REFERENCES = {"v11": [None, 0, 1], "v12": [None, None, 0, 1]}  # a delta part's referenced part (srnvtk.delta)
# Format 9 (bricks from the brick compressor, compact index): sha256, layout (size, halo), bricks, and the decoded
# 8^3 grid's statistics as above.
BRICKED = {
    "v9": ("a71242df65027518abf85176ead5aa52d6f23f67cd35b53758bab8278de587c0", ((6, 6, 6), 1),
           [(i, j, k) for k in range(2) for j in range(2) for i in range(2)],
           (112.1828, 87.0683, -13.9429, 273.6678, 203.4209, 133.6638, 10.8385)),
}
V8_MAX_ERROR = 4.0  # the bound v8.srn was made with (make_samples.py)
TOLERANCE = 0.01  # of values in [0, 255]: the fused C kernel and torch round differently in the last bits
# Format 10 (a vector field): sha256, time values, fields (name, components), parts (field, step, brick), and per
# time step the decoded 8^3 grid's velocity (all components): mean, std, min, max and the values at
# [0, 0, 0, x], [3, 4, 5, y], [7, 7, 7, z]. Velocities are below 1: a tolerance to match.
VECTORS = {
    "v10": ("5ab4fb6f8f0282a71c10295dfa16eedbe1bb0f7a8f06cc394b456e014c91f804", (1.2, 1.3),
            [("velocity", 3), ("density", 1)], [(0, 0, None), (1, 0, None), (0, 1, None), (1, 1, None)],
            [(-7.1e-05, 0.061046, -0.246922, 0.165733, 0.107723, -0.123396, 0.055678),
             (0.000626, 0.082463, -0.345568, 0.289926, 0.155613, -0.16905, 0.060626)]),
    # format 12: delta parts with a vector field
    "v12": ("7aacefe5314ddeb0cbcfa502c9dae8052cc35edfeaf4a050099fb074c2ddc501", (1.2, 1.3),
            [("velocity", 3), ("density", 1)], [(0, 0, None), (1, 0, None), (0, 1, None), (1, 1, None)],
            [(0.002074, 0.116289, -0.477469, 0.35609, 0.156983, -0.166067, 0.000516),
             (0.000417, 0.137309, -0.527436, 0.510789, 0.069782, -0.153891, -0.06539)]),
}
VECTOR_TOLERANCE = 2e-5


def decoded_stats(path: Path, step: int = 0) -> tuple[float, ...]:
    srn = read_srn(path)
    output = resampled_geometry(srn.geometry, (8, 8, 8))
    values = decode(srn, output, step=step, device="cpu", dtype="float32").astype(np.float64)
    return (values.mean(), values.std(), values.min(), values.max(), values[0, 0, 0], values[3, 4, 5],
            values[7, 7, 7])


@pytest.mark.parametrize("name", [*EXPECTED, *SERIES, *BRICKED, *VECTORS])
def test_sample_is_unchanged(name) -> None:
    expected = {**EXPECTED, **SERIES, **BRICKED, **VECTORS}[name][0]
    assert hashlib.sha256((FORMATS / f"{name}.srn").read_bytes()).hexdigest() == expected


@pytest.mark.parametrize("name", SERIES)
def test_series_sample_reads_and_decodes_as_recorded(name) -> None:
    _sha, times, parts, stats = SERIES[name]
    srn = read_srn(FORMATS / f"{name}.srn")
    assert srn.format_version == int(name[1:]) and srn.times == times
    assert [(p.field, p.step, p.brick) for p in srn.parts] == parts
    assert [p.reference for p in srn.parts] == REFERENCES.get(name, [None] * len(parts))
    assert srn.fields[0].name == "density" and srn.geometry.extent == (0, 11, 0, 9, 0, 8)
    for step, expected in enumerate(stats):
        np.testing.assert_allclose(decoded_stats(FORMATS / f"{name}.srn", step), expected, rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("name", BRICKED)
def test_bricked_sample_reads_and_decodes_as_recorded(name) -> None:
    _sha, (size, halo), bricks, stats = BRICKED[name]
    srn = read_srn(FORMATS / f"{name}.srn")
    assert srn.format_version == int(name[1:]) and (srn.bricks.size, srn.bricks.halo) == (size, halo)
    assert [p.brick for p in srn.parts] == bricks and srn.sections_read == 0
    assert srn.source.array_name == "density" and srn.geometry.extent == (0, 11, 0, 9, 0, 8)
    np.testing.assert_allclose(decoded_stats(FORMATS / f"{name}.srn"), stats, rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("name", VECTORS)
def test_vector_sample_reads_and_decodes_as_recorded(name) -> None:
    _sha, times, fields, parts, stats = VECTORS[name]
    srn = read_srn(FORMATS / f"{name}.srn")
    assert srn.format_version == int(name[1:]) and srn.times == times
    assert [(f.name, f.components) for f in srn.fields] == fields
    assert [(p.field, p.step, p.brick) for p in srn.parts] == parts
    assert [p.reference for p in srn.parts] == REFERENCES.get(name, [None] * len(parts))
    assert srn.parts_of(0, 0)[0].model_config.outputs == 3
    output = resampled_geometry(srn.geometry, (8, 8, 8))
    for step, expected in enumerate(stats):
        values = decode(srn, output, field=0, step=step, device="cpu", dtype="float32").astype(np.float64)
        assert values.shape == (8, 8, 8, 3)
        got = (values.mean(), values.std(), values.min(), values.max(), values[0, 0, 0, 0], values[3, 4, 5, 1],
               values[7, 7, 7, 2])
        np.testing.assert_allclose(got, expected, rtol=0, atol=VECTOR_TOLERANCE)
        assert decode(srn, output, field=1, step=step, device="cpu").shape == (8, 8, 8)
    for part in srn.parts:  # every part (read by now) keeps a vector part's PSNR per component and of the magnitude
        vector_stats = {"psnr_x", "psnr_y", "psnr_z", "psnr_magnitude"} & set(part.stats)
        assert vector_stats == (set() if part.field else {"psnr_x", "psnr_y", "psnr_z", "psnr_magnitude"})


@pytest.mark.parametrize("name", EXPECTED)
def test_sample_reads_and_decodes_as_recorded(name) -> None:
    _sha, architecture, method, structure, stats = EXPECTED[name]
    srn = read_srn(FORMATS / f"{name}.srn")
    assert srn.format_version == int(name[1:])
    assert srn.model_config.architecture == architecture and srn.pruning.method == method
    assert srn.model.structure() == structure
    assert srn.source.array_name == "density" and srn.source.dtype == "uint8"
    assert srn.source.geometry.extent == (0, 11, 0, 9, 0, 8) and srn.source.value_range == (0.0, 255.0)
    assert srn.srnvtk_version == "0.1.0"
    assert getattr(srn.model_config, "grid_bits", 8) == (5 if name == "v7" else 8)
    np.testing.assert_allclose(decoded_stats(FORMATS / f"{name}.srn"), stats, rtol=0, atol=TOLERANCE)


def test_v8_sample_keeps_its_bound() -> None:
    """The resampled 8^3 grid above is off the source lattice (network only); the source grid keeps the bound."""
    from srnvtk.datasets import default_volume_values

    srn = read_srn(FORMATS / "v8.srn")
    assert srn.bound is not None and srn.bound.max_error == V8_MAX_ERROR and srn.bound.coder == "quant"
    original = default_volume_values((12, 10, 9)).astype(np.float64)
    decoded = decode(srn, device="cpu")
    assert decoded.dtype == np.uint8
    assert np.abs(decoded - original).max() <= V8_MAX_ERROR
    assert np.abs(decoded - original).max() > 0  # not lossless: the bound is what is kept


def test_every_version_has_a_sample() -> None:
    from srnvtk.fileformat import READABLE_VERSIONS

    assert sorted(p.stem for p in FORMATS.glob("v*.srn")) == sorted(f"v{v}" for v in READABLE_VERSIONS)


@pytest.mark.paraview
def test_samples_read_in_pvpython(tmp_path) -> None:
    """ParaView's Python has Debian's h5py (HDF5 1.10) and forks the parsing child from pvpython itself."""
    from paraview_helpers import PVSCRIPTS, check_ran, paraview_env, require_programs, run_paraview

    pvpython = require_programs("pvpython")["pvpython"]
    hostile = sorted((Path(__file__).resolve().parent / "data" / "hostile").glob("*.srn"))
    files = [FORMATS / f"{name}.srn" for name in EXPECTED] + hostile
    proc = run_paraview([pvpython, PVSCRIPTS / "read_legacy.py", tmp_path, *files], paraview_env(), timeout=300,
                        cwd=PVSCRIPTS)
    check_ran(proc, "read_legacy.py done")
    import json

    result = json.loads((tmp_path / "read_legacy.json").read_text())
    for name, (_sha, _arch, _method, _structure, stats) in EXPECTED.items():
        got = result[f"{name}.srn"]
        assert got["version"] == int(name[1:])
        np.testing.assert_allclose(got["decoded"], stats[:4], rtol=0, atol=TOLERANCE)
        assert got["reader_points"] == 12 * 10 * 9
    for path in hostile:
        got = result[path.name]
        assert "error" in got and "\n" not in got["error"], (path.name, got)
        assert got["seconds"] < 5.0
