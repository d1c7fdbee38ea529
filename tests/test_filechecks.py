"""srnvtk.filechecks: every number, name and size a file claims, refused with one-line FileFormatErrors; the
tensor shapes derived from the settings agree with what the writer stores for real models."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from srnvtk import filechecks as fc
from srnvtk.config import FVSRNConfig, NeurcompConfig
from srnvtk.datasets import default_geometry
from srnvtk.errors import FileFormatError
from srnvtk.models import build_model, model_from_structure
from srnvtk.quantize import storage_tensors
from srnvtk.volume import Geometry


def refused(fragment: str, check, *args) -> str:
    with pytest.raises(FileFormatError, match=fragment) as info:
        check(*args)
    message = str(info.value)
    assert "\n" not in message and len(message) < 600
    return message


# ---------------------------------------------------------------------------------------------
# scalars and text


def test_format_version_must_be_an_integer() -> None:
    assert fc.check_format_version(3) == 3 and fc.check_format_version(np.int64(4)) == 4
    for value in ("3", b"3", 3.0, np.float64(3), True, np.bool_(True), None, [3]):
        refused("is not an integer", fc.check_format_version, value)


@pytest.mark.parametrize("name", ["density", "Dichte_ä", "temperature [K]", "a/b\\c", "x" * 256, "velocity magnitude"])
def test_array_names_that_pass(name) -> None:
    assert fc.check_array_name(name) == name
    assert fc.check_array_name(name.encode()) == name


@pytest.mark.parametrize("name", ['x"/><ImageData', "a<b", "a>b", "R&D", "it's", 'say "hi"', "red\x1b[31m",
                                  "two\nlines", "tab\there", "nul\x00", "bidi\u202e", ""])
def test_array_names_that_could_break_an_output_are_refused(name) -> None:
    with pytest.raises(FileFormatError) as info:
        fc.check_array_name(name)
    assert "\n" not in str(info.value) and "\x1b" not in str(info.value)


def test_array_name_length_and_type() -> None:
    refused("characters", fc.check_array_name, "x" * 257)
    refused("is not text", fc.check_array_name, 5)
    refused("not UTF-8", fc.check_array_name, b"\xff\xfe")
    refused("not UTF-8", fc.check_array_name, "bad\udcff")  # h5py's escape of a byte that is not UTF-8


def test_text_limits() -> None:
    assert fc.check_text("{}", "x") == "{}"
    refused("longer than 16 bytes", fc.check_text, "é" * 9, "x", 16)  # 18 UTF-8 bytes
    refused("NUL", fc.check_text, "a\x00b", "x")


def test_source_dtype() -> None:
    assert fc.check_source_dtype("float32") == "float32"
    refused("unsupported array type", fc.check_source_dtype, "complex64")
    refused("unsupported array type", fc.check_source_dtype, "object")


GOOD = ((0, 9, -2, 5, 10, 12), (0.5, -1.0, 2.0), (0.1, 0.2, 0.3))


def test_a_good_geometry() -> None:
    geometry = fc.check_geometry(*GOOD)
    assert geometry == Geometry(*GOOD)
    assert fc.check_geometry(np.array(GOOD[0], dtype=np.int64), np.array(GOOD[1]), list(GOOD[2])) == geometry


@pytest.mark.parametrize(("extent", "origin", "spacing", "fragment"), [
    (GOOD[0], (math.nan, 0, 0), GOOD[2], "origin .* is not finite"),
    (GOOD[0], (0, math.inf, 0), GOOD[2], "origin .* is not finite"),
    (GOOD[0], GOOD[1], (math.nan, 1, 1), "spacing .* is not finite and positive"),
    (GOOD[0], GOOD[1], (1, -math.inf, 1), "spacing .* is not finite and positive"),
    (GOOD[0], GOOD[1], (1, 1, -0.5), "spacing .* is not finite and positive"),
    (GOOD[0], GOOD[1], (1, 0.0, 1), "spacing .* is not finite and positive"),
    ((0, 2e62, 0, 4, 0, 4), GOOD[1], GOOD[2], "is not integers"),
    ((0, 4.5, 0, 4, 0, 4), GOOD[1], GOOD[2], "is not integers"),
    ((0, 4.0, 0, 4, 0, 4), GOOD[1], GOOD[2], "is not integers"),
    ((0, True, 0, 4, 0, 4), GOOD[1], GOOD[2], "is not integers"),
    ((0, 2**40, 0, 4, 0, 4), GOOD[1], GOOD[2], "outside VTK's integer range"),
    ((-(2**31) - 1, 4, 0, 4, 0, 4), GOOD[1], GOOD[2], "outside VTK's integer range"),
    ((5, 4, 0, 4, 0, 4), GOOD[1], GOOD[2], "fewer than 2 points"),
    ((0, 0, 0, 4, 0, 4), GOOD[1], GOOD[2], "fewer than 2 points"),
    ((0, 4, 0, 4), GOOD[1], GOOD[2], "wrong number of values"),
    (GOOD[0], (0, 0), GOOD[2], "wrong number of values"),
    (GOOD[0], ("0", 0, 0), GOOD[2], "is not numbers"),
    ((0, 10, 0, 4, 0, 4), GOOD[1], (1e308, 1, 1), "no finite bounds"),
    ((0, 2**31 - 1, -(2**31), 2**31 - 1, -(2**31), 2**31 - 1), GOOD[1], (1, 1, 1), "more points than VTK"),
], ids=["nan-origin", "inf-origin", "nan-spacing", "inf-spacing", "negative-spacing", "zero-spacing", "extent-2e62",
        "fractional-extent", "float-extent", "bool-extent", "huge-extent", "below-int-range", "reversed-extent",
        "one-point", "short-extent", "short-origin", "text-origin", "bounds-overflow", "too-many-points"])
def test_bad_geometry(extent, origin, spacing, fragment) -> None:
    message = refused(fragment, fc.check_geometry, extent, origin, spacing)
    assert message.startswith("source geometry is invalid") or "wrong number" in message


def test_value_range() -> None:
    assert fc.check_value_range(np.float64(-2.5), 7) == (-2.5, 7.0)
    assert fc.check_value_range(-1e300, 1e300) == (-1e300, 1e300)
    for low, high in [(-1e308, 1e308), (0, math.inf), (math.nan, 1), (-math.inf, 0)]:
        refused("is not finite", fc.check_value_range, low, high)
    refused("is empty", fc.check_value_range, 1.0, 1.0)
    refused("is empty", fc.check_value_range, 2.0, 1.0)
    refused("not numbers", fc.check_value_range, "0", 1)
    refused("not numbers", fc.check_value_range, False, 1)


def test_exact_dtypes() -> None:
    fc.check_dtype("w", np.float16, fc.FLOAT16)
    fc.check_dtype("g", "|u1", fc.UINT8)
    refused("stored as >f2, not <f2", fc.check_dtype, "w", ">f2", fc.FLOAT16)
    refused("stored as <i4", fc.check_dtype, "w", np.int32, fc.FLOAT16)
    refused("stored as <f8", fc.check_dtype, "w", np.float64, fc.FLOAT16)
    refused("stored as |i1", fc.check_dtype, "g", np.int8, fc.UINT8)


# ---------------------------------------------------------------------------------------------
# JSON


def test_json_objects() -> None:
    assert fc.check_json_object('{"a": 1}', "x", ["a", "b"]) == {"a": 1}
    refused("x is not valid JSON", fc.check_json_object, "{oops", "x")
    refused("x is not a JSON object", fc.check_json_object, "[1, 2]", "x")
    refused("x has unknown keys: c", fc.check_json_object, '{"a": 1, "c": 2}', "x", ["a", "b"])
    refused("x is not valid JSON", fc.check_json_object, "[" * 100_000 + "]" * 100_000, "x")  # recursion
    refused("longer than", fc.check_json_object, json.dumps({"a": "x" * (fc.MAX_TEXT_BYTES + 1)}), "x")
    refused("not valid JSON", fc.check_json_object, '{"a": ' + "9" * 5000 + "}", "x")  # Python's digit limit


def test_layouts() -> None:
    expected = {"a.weight": (2, 3), "a.bias": (2,)}
    assert fc.check_layout('[["a.bias", [2]], ["a.weight", [2, 3]]]', expected, "L") == [["a.bias", [2]],
                                                                                         ["a.weight", [2, 3]]]
    refused("do not match the model's", fc.check_layout, '[["a.weight", [3, 2]], ["a.bias", [2]]]', expected, "L")
    refused("do not match the model's", fc.check_layout, '[["a.weight", [2, 3]]]', expected, "L")
    refused("names a.bias twice", fc.check_layout, '[["a.bias", [2]], ["a.bias", [2]]]', expected, "L")
    refused("not a list of", fc.check_layout, '{"a": 1}', expected, "L")
    refused("not a list of", fc.check_layout, '[["a.bias"]]', expected, "L")
    refused("integers >= 0", fc.check_layout, '[["a.bias", [-2]]]', expected, "L")
    refused("integers >= 0", fc.check_layout, '[["a.bias", [true]]]', expected, "L")
    refused("integers >= 0", fc.check_layout, '[["a.bias", [2.0]]]', expected, "L")


# ---------------------------------------------------------------------------------------------
# sizes: the specs agree with what the writer stores for real models

SMALL = FVSRNConfig(grid_channels=3, grid_resolution=6, mlp_width=8, mlp_layers=2, fourier_features=1)
GEOMETRY = default_geometry((12, 9, 7))
CASES = {
    "fvsrn": (SMALL, None),
    "fvsrn-wide": (dataclasses.replace(SMALL, mlp_layers=3, fourier_features=0, grid_channels=5), None),
    "fvsrn-pruned-position": (SMALL, "position"),
    "fvsrn-pruned-channel": (SMALL, "channel"),
    "wavelet-db2": (dataclasses.replace(SMALL, grid_resolution=9, wavelet="db2"), None),
    "wavelet-haar-2-pruned": (dataclasses.replace(SMALL, grid_resolution=9, wavelet="haar", wavelet_levels=2),
                              "channel"),
    "neurcomp": (NeurcompConfig(width=6, blocks=2), None),
    "neurcomp-plain-pruned": (NeurcompConfig(width=6, blocks=2, residual=False), "widths"),
    "neurcomp-clustered": (NeurcompConfig(width=6, blocks=3, weight_clusters=4), "cluster"),
}


def _stored(config, change):
    import torch

    model = build_model(config, GEOMETRY)
    if change in ("position", "channel"):
        channels, *zyx = model.latent.shape
        keep = torch.rand((1 if change == "position" else channels, *zyx), generator=torch.Generator().manual_seed(1))
        model.set_grid_keep(keep > 0.4)
    elif change == "widths":
        model = model_from_structure(config, GEOMETRY, {"widths": [6, 3, 0, 5, 6]})
    elif change == "cluster":
        model.share_weights()
    return model, storage_tensors(model)


@pytest.mark.parametrize("case", CASES)
def test_specs_match_what_the_writer_stores(case) -> None:
    config, change = CASES[case]
    model, stored = _stored(config, change)
    structure = fc.check_structure(config, json.loads(json.dumps(stored.structure)))
    plan = fc.tensor_specs(config, structure, GEOMETRY)
    assert set(plan.specs) == set(stored.arrays)
    for name, array in stored.arrays.items():
        assert plan.specs[name].matches(array.dtype, array.shape), (name, array.dtype, array.shape,
                                                                      plan.specs[name].describe())
    assert fc.check_layout(json.dumps(stored.layout), plan.weights_layout, "weights_layout") == stored.layout
    assert dict((n, tuple(s)) for n, s in stored.index_layout) == plan.index_layout
    assert plan.entries == sum(a.size for n, a in stored.arrays.items() if n in ("grid", "weights", "weight_indices")
                               ) or change in ("position", "channel")  # a pruned grid stores fewer than it may


def test_fvsrn_parameter_shapes_are_the_mlps() -> None:
    for config in (SMALL, dataclasses.replace(SMALL, mlp_layers=1), dataclasses.replace(SMALL, fourier_features=4)):
        model = build_model(config, GEOMETRY)
        expected = {k: tuple(v.shape) for k, v in model.state_dict().items() if k != "grid"}
        assert fc.fvsrn_parameter_shapes(config) == expected


def test_a_shape_that_disagrees_is_refused() -> None:
    plan = fc.tensor_specs(SMALL, {"grid_shape": [4, 5, 6], "keep_shape": None}, GEOMETRY)
    assert plan.specs["grid"].matches(np.uint8, (3, 4, 5, 6))
    assert not plan.specs["grid"].matches(np.uint8, (3, 4, 5, 7))
    assert not plan.specs["grid"].matches(np.int8, (3, 4, 5, 6))
    assert not plan.specs["weights"].matches(np.float32, plan.specs["weights"].shape)


def test_model_size_limits() -> None:
    assert fc.model_entry_limit(10) == fc.MODEL_ENTRIES_FLOOR
    assert fc.model_entry_limit(2**27) == 2**29
    assert fc.model_entry_limit(2**40) == fc.MAX_MODEL_ENTRIES
    # a 512^3 grid for a 12 x 9 x 7 volume: refused before anything is sized by it
    refused(r"claims 2,147,483,648 stored entries, more than the 16,777,216 allowed", fc.tensor_specs,
            dataclasses.replace(SMALL, grid_channels=16), {"grid_shape": [512, 512, 512], "keep_shape": None},
            GEOMETRY)
    big_volume = Geometry((0, 4095, 0, 4095, 0, 4095))
    refused("more than the 1,073,741,824 allowed", fc.tensor_specs, dataclasses.replace(SMALL, grid_channels=16),
            {"grid_shape": [1024, 1024, 1024], "keep_shape": None}, big_volume)
    # the most a config allows: 4096 wide, 64 blocks
    neurcomp = NeurcompConfig(width=4096, blocks=64)
    refused("claims .* stored entries", fc.tensor_specs, neurcomp, {"widths": [4096] * 129, "clustered_layers": []},
            GEOMETRY)
    wavelet = dataclasses.replace(SMALL, wavelet="haar")
    refused("at most 1024 per axis", fc.tensor_specs, wavelet,
            {"grid_shape": [2, 2, 2000], "keep_shape": None, "wavelet_levels": [1, 1, 10]}, big_volume)


@pytest.mark.parametrize(("config", "structure", "fragment"), [
    (SMALL, {"grid_shape": [4, 4]}, "grid shape is not a list of 3"),
    (SMALL, {"grid_shape": [4, 4, 0]}, "integers >= 1"),
    (SMALL, {"grid_shape": [4, 4, 4], "keep_shape": [2, 4, 4, 4]}, "keep mask's shape"),
    (SMALL, {"grid_shape": [4, 4, 4], "keep_shape": [1, 4, 4, 5]}, "keep mask's shape"),
    (SMALL, {"grid_shape": [4, 4, 4], "colour": 1}, "unknown keys: colour"),
    (SMALL, {"grid_shape": [4, 4, 4], "wavelet_levels": [1, 1, 1]}, "wavelet levels for a plain grid"),
    (dataclasses.replace(SMALL, wavelet="haar"), {"grid_shape": [8, 8, 8], "wavelet_levels": [1, 1, 1]},
     r"wavelet levels \(1, 1, 1\) were stored, the settings give \(3, 3, 3\)"),
    (dataclasses.replace(SMALL, wavelet="haar"), {"grid_shape": [8, 8, 8]}, "wavelet levels is not a list"),
    (NeurcompConfig(width=6, blocks=2), {"grid_shape": [4, 4, 4]}, "unknown keys"),
    (NeurcompConfig(width=6, blocks=2), {}, "no layer widths"),
    (NeurcompConfig(width=6, blocks=2), {"widths": [6, 6, 6]}, "3 layer widths for 2 blocks"),
    (NeurcompConfig(width=6, blocks=2), {"widths": [6, 7, 6, 6, 6]}, "outside"),
    (NeurcompConfig(width=6, blocks=2), {"widths": [6, 6, 6, 6, 6], "clustered_layers": [1]},
     "clustered layers .* do not fit"),
    (NeurcompConfig(width=6, blocks=2, weight_clusters=4), {"widths": [6] * 5, "clustered_layers": [1, 1]},
     "clustered layers .* do not fit"),
    (NeurcompConfig(width=6, blocks=2, weight_clusters=4), {"widths": [6] * 5, "clustered_layers": [0]},
     "clustered layers .* do not fit"),
    (SMALL, [4, 4, 4], "not a JSON object"),
], ids=["short-grid", "zero-grid", "keep-channels", "keep-size", "unknown-key", "plain-levels", "wrong-levels",
        "no-levels", "neurcomp-grid", "no-widths", "widths-count", "too-wide", "clusters-off", "twice-clustered",
        "first-layer-clustered", "not-object"])
def test_bad_structures(config, structure, fragment) -> None:
    def check():
        fc.tensor_specs(config, fc.check_structure(config, structure), GEOMETRY)

    refused(fragment, check)
