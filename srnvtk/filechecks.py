"""Checks of everything a .srn file claims, shared by every reader (the legacy HDF5 one and the newer container).

A file is data from anywhere: each number, name and size in it is checked here before anything is built from
it, and every refusal is a one-line `FileFormatError`. Nothing here reads files, imports h5py or builds tensors:
the checks run on plain values (Python numbers, strings, numpy dtypes, parsed JSON), so a reader calls them
on what it has parsed, before it reads the data those values describe.

Three kinds of checks:
- scalars and text: an integer format version, a safe array name (it ends up in VTK XML and on screens),
  a finite geometry with positive spacing and integer extents that VTK can index, a finite value range;
- settings as JSON objects with known keys and typed values (the model structure and the packed layouts);
- sizes: `tensor_specs` derives, from the model settings and the stored structure alone, the exact dtype and
  shape of every tensor the file must hold (as the model itself would have them), and refuses a model with
  more entries than the volume it claims to encode could justify, before any tensor is read or allocated.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .config import FVSRNConfig, ModelConfig, NeurcompConfig
from .errors import FileFormatError, SettingsError
from .volume import SUPPORTED_DTYPES, Geometry

# VTK stores extents as C ints and counts points with a 64-bit vtkIdType.
VTK_INT_MIN, VTK_INT_MAX = -(2**31), 2**31 - 1
MAX_POINTS = 2**63 - 1
MAX_ABS_VALUE = 1e300  # a value range beyond this is no data srnvtk wrote (and max - min would overflow)
MAX_ARRAY_NAME = 256  # characters
FORBIDDEN_NAME_CHARACTERS = frozenset("<>&\"'")  # markup and quoting: no output format may be broken by a name
MAX_TEXT_BYTES = 1 << 20  # any JSON or text attribute; a real model's longest (a layout) is a few kB
# Model size: at most this many stored entries (codes, weights, indices) however large the volume ...
MAX_MODEL_ENTRIES = 2**30
# ... and no more than ENTRIES_PER_POINT per point of the volume it encodes (a file of 4 uint8 codes per point
# is already as large as the float32 volume), except that any model up to MODEL_ENTRIES_FLOOR entries passes
# (tests and tiny volumes legitimately store models larger than the volume).
ENTRIES_PER_POINT = 4
MODEL_ENTRIES_FLOOR = 2**24
# A wavelet grid's transform builds a dense (n x n) float64 matrix per axis length and level: no axis longer
# than the longest grid_resolution allows.
MAX_WAVELET_AXIS = 1024

# Tensor names, as srnvtk.quantize stores them (repeated here so that checking a file never imports torch).
GRID, GRID_QUANT, GRID_KEEP, WEIGHTS, WEIGHT_INDICES = "grid", "grid_quant", "grid_keep", "weights", "weight_indices"
UINT8, FLOAT16, FLOAT32 = np.dtype("uint8"), np.dtype("<f2"), np.dtype("<f4")
STRUCTURE_KEYS = {"fvsrn": {"grid_shape", "keep_shape", "wavelet_levels"}, "neurcomp": {"widths", "clustered_layers"}}


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def one_line(text: Any, limit: int = 300) -> str:
    """text on one line, at most about limit characters (for messages quoting what a file holds)."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[:limit] + "..."


# ---------------------------------------------------------------------------------------------------------------
# scalars and text


def check_header_keys(header: dict, keys: Sequence[str], format_name: str) -> None:
    """A container header has exactly these keys and the srnvtk format marker."""
    unknown = sorted(set(header) - set(keys))
    missing = sorted(set(keys) - set(header))
    if unknown or missing:
        raise FileFormatError(f"the header has unknown keys {one_line(unknown, 100)} or lacks {missing}")
    if header["format"] != format_name:
        raise FileFormatError("it lacks the srnvtk format marker")


def check_object_keys(value: dict, allowed: Sequence[str], what: str) -> None:
    """A header object holds only keys the format defines (a crafted file cannot slip extra entries past a
    reader that would ignore them)."""
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise FileFormatError(f"{what} has unknown keys {one_line(unknown, 100)}")


def check_format_version(value: Any) -> int:
    """The format version as an int: an integer (not a bool, a float or a string)."""
    if not _is_int(value):
        raise FileFormatError(f"the format version {one_line(repr(value), 60)} is not an integer")
    return int(value)


def check_text(value: Any, what: str, max_bytes: int = MAX_TEXT_BYTES) -> str:
    """A str of at most max_bytes UTF-8 bytes without NUL characters."""
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            raise FileFormatError(f"{what} is not UTF-8 text") from None
    if not isinstance(value, str):
        raise FileFormatError(f"{what} is not text")
    if len(value) > max_bytes:
        raise FileFormatError(f"{what} is longer than {max_bytes} bytes")
    try:
        size = len(value.encode("utf-8"))  # refuses lone surrogates (h5py's escapes of bytes that are not UTF-8)
    except UnicodeEncodeError:
        raise FileFormatError(f"{what} is not UTF-8 text") from None
    if size > max_bytes:
        raise FileFormatError(f"{what} is longer than {max_bytes} bytes")
    if "\x00" in value:
        raise FileFormatError(f"{what} holds a NUL character")
    return value


def check_array_name(name: Any) -> str:
    """An array name that no output format can be broken by: 1 to MAX_ARRAY_NAME printable characters, none of
    `<>&"'` (it is written into VTK XML attributes, shown in ParaView and printed by the CLI)."""
    name = check_text(name, "the array name", 4 * MAX_ARRAY_NAME)
    if not 1 <= len(name) <= MAX_ARRAY_NAME:
        raise FileFormatError(f"the array name has {len(name)} characters (1 to {MAX_ARRAY_NAME} allowed)")
    if not name.isprintable() or FORBIDDEN_NAME_CHARACTERS & set(name):
        raise FileFormatError(f"the array name {one_line(ascii(name), 80)} holds control or markup characters "
                              f"(none of <>&\"' allowed)")
    return name


def check_source_dtype(value: Any) -> str:
    text = check_text(value, "the source's array type", 64)
    if text not in SUPPORTED_DTYPES:
        raise FileFormatError(f"unsupported array type '{one_line(ascii(text)[1:-1], 60)}'")
    return text


def check_geometry(extent: Any, origin: Any, spacing: Any) -> Geometry:
    """The source geometry: 6 integer extents within VTK's int range with at least 2 points per axis and fewer
    than 2**63 points in all, a finite origin, finite positive spacing and finite bounds."""
    values = [extent, origin, spacing]
    for i, (what, count) in enumerate((("extent", 6), ("origin", 3), ("spacing", 3))):
        seq = values[i]
        if isinstance(seq, np.ndarray):
            seq = seq.tolist() if seq.ndim == 1 else None
        if not isinstance(seq, (list, tuple)) or len(seq) != count:
            raise FileFormatError("source geometry has the wrong number of values")
        if what == "extent" and not all(_is_int(v) for v in seq):
            raise _bad_geometry(f"extent {one_line(seq, 120)} is not integers")
        if what != "extent" and not all(_is_number(v) for v in seq):
            raise _bad_geometry(f"{what} {one_line(seq, 120)} is not numbers")
        values[i] = seq
    ext = tuple(int(v) for v in values[0])
    org = tuple(float(v) for v in values[1])
    spc = tuple(float(v) for v in values[2])
    if not all(VTK_INT_MIN <= v <= VTK_INT_MAX for v in ext):
        raise _bad_geometry(f"extent {one_line(ext, 120)} is outside VTK's integer range")
    if any(ext[2 * a + 1] - ext[2 * a] < 1 for a in range(3)):
        raise _bad_geometry(f"extent {ext} has fewer than 2 points along an axis")
    if not all(math.isfinite(v) for v in org):
        raise _bad_geometry(f"origin {org} is not finite")
    if not all(math.isfinite(v) and v > 0.0 for v in spc):
        raise _bad_geometry(f"spacing {spc} is not finite and positive")
    geometry = Geometry(ext, org, spc)
    if geometry.num_points > MAX_POINTS:
        raise _bad_geometry(f"extent {ext} has more points than VTK can index")
    bounds = [b for pair in geometry.bounds() for b in pair]
    lengths = [hi - lo for lo, hi in geometry.bounds()]
    if not all(math.isfinite(b) for b in bounds) or not all(math.isfinite(n) and n > 0 for n in lengths):
        raise _bad_geometry(f"extent {ext}, origin {org} and spacing {spc} give no finite bounds")
    return geometry


def _bad_geometry(detail: str) -> FileFormatError:
    return FileFormatError(f"source geometry is invalid ({detail})")


def check_value_range(value_min: Any, value_max: Any) -> tuple[float, float]:
    """A finite, non-empty value range within +-MAX_ABS_VALUE."""
    if not (_is_number(value_min) and _is_number(value_max)):
        raise FileFormatError("the value range is not numbers")
    low, high = float(value_min), float(value_max)
    if not all(math.isfinite(v) and abs(v) <= MAX_ABS_VALUE for v in (low, high)):
        raise FileFormatError(f"value range ({low!r}, {high!r}) is not finite (|value| <= {MAX_ABS_VALUE:g})")
    if not high > low:
        raise FileFormatError(f"value range {(low, high)} is empty")
    return low, high


def check_dtype(what: str, dtype: Any, expected: np.dtype) -> None:
    """Exactly the expected numpy dtype, byte order included."""
    try:
        found = np.dtype(dtype)
    except TypeError:
        raise FileFormatError(f"{what} has an unknown type") from None
    if found != expected:  # numpy's equality includes the byte order
        raise FileFormatError(f"{what} is stored as {found.str}, not {expected.str}")


# ---------------------------------------------------------------------------------------------------------------
# JSON


def check_json_object(text: Any, what: str, known: Sequence[str] | None = None) -> dict:
    """The JSON object a text holds; with known, only those keys may appear."""
    text = check_text(text, what)
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise FileFormatError(f"{what} is not valid JSON ({one_line(exc, 120)})") from None
    if not isinstance(data, dict):
        raise FileFormatError(f"{what} is not a JSON object")
    if known is not None:
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise FileFormatError(f"{what} has unknown keys: {one_line(', '.join(unknown), 120)}")
    return data


def _int_list(value: Any, what: str, length: int | None = None, low: int = 0) -> list[int]:
    if not isinstance(value, list) or (length is not None and len(value) != length):
        size = "a list" if length is None else f"a list of {length}"
        raise FileFormatError(f"{what} is not {size} integers")
    if not all(_is_int(v) and v >= low for v in value):
        raise FileFormatError(f"{what} {one_line(value, 80)} holds values that are not integers >= {low}")
    return [int(v) for v in value]


def check_layout(text: Any, expected: Mapping[str, tuple[int, ...]], what: str) -> list[list]:
    """A packed layout (JSON text, or its parsed list: [[name, shape], ...]) holding exactly the expected names
    and shapes, in any order.

    Returns it as [[name, [sizes]], ...] in the file's order (the order the vector is packed in)."""
    if isinstance(text, list):
        data = text
    else:
        text = check_text(text, what)
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise FileFormatError(f"{what} is not valid JSON ({one_line(exc, 120)})") from None
    if not isinstance(data, list) or len(data) > 4 * len(expected) + 4:
        raise FileFormatError(f"{what} is not a list of [name, shape] pairs")
    layout, found = [], {}
    for item in data:
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)):
            raise FileFormatError(f"{what} is not a list of [name, shape] pairs")
        name, shape = item[0], _int_list(item[1], f"{what}'s shape of {one_line(item[0], 60)}")
        if name in found:
            raise FileFormatError(f"{what} names {one_line(name, 60)} twice")
        found[name] = tuple(shape)
        layout.append([name, shape])
    if found != dict(expected):
        raise FileFormatError(f"the shapes in {what} {one_line(found, 200)} do not match the model's "
                              f"{one_line(dict(expected), 200)}")
    return layout


# ---------------------------------------------------------------------------------------------------------------
# sizes


@dataclass(frozen=True)
class TensorSpec:
    """What a stored tensor must be: its exact dtype and shape; a None size is only bounded (by max_size)."""

    dtype: np.dtype
    shape: tuple[int | None, ...]
    max_size: int = 0

    def matches(self, dtype: Any, shape: Sequence[int]) -> bool:
        if np.dtype(dtype) != self.dtype or len(shape) != len(self.shape):
            return False
        return all(s == e if e is not None else 0 <= s <= self.max_size for s, e in zip(shape, self.shape, strict=True))

    def describe(self) -> str:
        sizes = ", ".join(f"<={self.max_size}" if s is None else str(s) for s in self.shape)
        return f"{self.dtype.name} ({sizes}{',' if len(self.shape) == 1 else ''})"


@dataclass(frozen=True)
class TensorPlan:
    """Every tensor a file of these settings and this structure must hold, and the layouts of the packed ones."""

    specs: dict[str, TensorSpec]
    weights_layout: dict[str, tuple[int, ...]]  # name -> shape of every packed fp16 weight
    index_layout: dict[str, tuple[int, ...]] = field(default_factory=dict)  # name -> shape of every uint8 index
    entries: int = 0  # stored entries in all: codes, weights, indices


def model_entry_limit(num_points: int) -> int:
    """The most stored entries a model of a volume with this many points may have."""
    return min(MAX_MODEL_ENTRIES, max(MODEL_ENTRIES_FLOOR, ENTRIES_PER_POINT * num_points))


def check_structure(config: ModelConfig, structure: Any) -> dict:
    """The stored model structure as a dict with known keys and well-typed values (sizes are checked by
    `tensor_specs`)."""
    try:
        return _checked_structure(config, structure)
    except FileFormatError as exc:
        raise FileFormatError(f"the model structure does not fit the settings ({exc})") from None


def _checked_structure(config: ModelConfig, structure: Any) -> dict:
    if not isinstance(structure, dict):
        raise FileFormatError("it is not a JSON object")
    unknown = sorted(set(structure) - STRUCTURE_KEYS[config.architecture])
    if unknown:
        raise FileFormatError(f"unknown keys: {one_line(', '.join(unknown), 120)}")
    checked: dict[str, Any] = {}
    if isinstance(config, FVSRNConfig):
        checked["grid_shape"] = _int_list(structure.get("grid_shape"), "the grid shape", 3, low=1)
        keep = structure.get("keep_shape")
        checked["keep_shape"] = None if keep is None else _int_list(keep, "the keep mask shape", 4, low=1)
        if config.wavelet is not None:
            checked["wavelet_levels"] = _int_list(structure.get("wavelet_levels"), "the wavelet levels", 3)
        elif structure.get("wavelet_levels") is not None:
            raise FileFormatError("wavelet levels for a plain grid")
    else:
        if "widths" not in structure:
            raise FileFormatError("no layer widths")
        checked["widths"] = _int_list(structure["widths"], "the layer widths")
        checked["clustered_layers"] = _int_list(structure.get("clustered_layers", []), "the clustered layers")
    return checked


def fvsrn_parameter_shapes(config: FVSRNConfig) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every fp16-stored parameter of an fV-SRN (its MLP; the latent tensor is stored apart)."""
    shapes: dict[str, tuple[int, ...]] = {}
    width, previous = config.mlp_width, 3 + 6 * config.fourier_features + config.grid_channels
    for i in range(config.mlp_layers):  # Linear at 2i, Snake at 2i + 1
        shapes[f"mlp.{2 * i}.weight"] = (width, previous)
        shapes[f"mlp.{2 * i}.bias"] = (width,)
        previous = width
    shapes[f"mlp.{2 * config.mlp_layers}.weight"] = (config.outputs, width)
    shapes[f"mlp.{2 * config.mlp_layers}.bias"] = (config.outputs,)
    return shapes


def tensor_specs(config: ModelConfig, structure: dict, geometry: Geometry) -> TensorPlan:
    """The dtype and shape of every tensor a file with these settings and this (checked) structure holds, as the
    model would have them; FileFormatError when the structure does not fit the settings or the model would
    have more entries than `model_entry_limit` allows for the volume."""
    limit = model_entry_limit(geometry.num_points)
    if isinstance(config, FVSRNConfig):
        plan = _fvsrn_specs(config, structure, limit)
    elif isinstance(config, NeurcompConfig):
        plan = _neurcomp_specs(config, structure, limit)
    else:
        raise FileFormatError(f"unknown model settings {type(config).__name__}")
    if plan.entries > limit:
        raise FileFormatError(f"the model claims {plan.entries:,} stored entries, more than the {limit:,} allowed for "
                              f"a volume of {geometry.num_points:,} points")
    return plan


def _too_large(entries: int, limit: int) -> FileFormatError:
    return FileFormatError(f"the model claims {entries:,} stored entries, more than the {limit:,} allowed")


def _fvsrn_specs(config: FVSRNConfig, structure: dict, limit: int) -> TensorPlan:
    channels = config.grid_channels
    grid_shape = tuple(structure["grid_shape"])
    positions = math.prod(grid_shape)
    latent = channels * positions
    if latent > limit:  # before anything below sizes a wavelet transform by it
        raise _too_large(latent, limit)
    weights = fvsrn_parameter_shapes(config)
    entries = latent + sum(math.prod(s) for s in weights.values())
    specs = {WEIGHTS: TensorSpec(FLOAT16, (sum(math.prod(s) for s in weights.values()),))}
    groups = 1
    if config.wavelet is not None:
        if max(grid_shape) > MAX_WAVELET_AXIS:
            raise FileFormatError(f"a wavelet grid of shape {grid_shape} (at most {MAX_WAVELET_AXIS} per axis)")
        from .wavelet import level_groups, resolve_levels, subbands  # PyWavelets arithmetic only

        try:
            levels = resolve_levels(grid_shape, config.wavelet, config.wavelet_levels)
        except SettingsError as exc:
            raise FileFormatError(str(exc)) from None
        if tuple(structure["wavelet_levels"]) != tuple(levels):
            raise FileFormatError(f"wavelet levels {tuple(structure['wavelet_levels'])} were stored, the settings "
                                  f"give {tuple(levels)}")
        groups = len(level_groups(subbands(grid_shape, levels)))
    specs[GRID_QUANT] = TensorSpec(FLOAT32, (2, channels) if config.wavelet is None else (2, channels, groups))
    keep = structure.get("keep_shape")
    if keep is None:
        specs[GRID] = TensorSpec(UINT8, (channels, *grid_shape))
    else:
        if tuple(keep[1:]) != grid_shape or keep[0] not in (1, channels):
            raise FileFormatError(f"the keep mask's shape {tuple(keep)} does not fit the grid "
                                  f"{(channels, *grid_shape)}")
        specs[GRID_KEEP] = TensorSpec(UINT8, ((math.prod(keep) + 7) // 8,))
        specs[GRID] = TensorSpec(UINT8, (None,), max_size=latent)
    return TensorPlan(specs, weights, {}, entries)


def _neurcomp_specs(config: NeurcompConfig, structure: dict, limit: int) -> TensorPlan:
    from .models.neurcomp import check_widths, hidden_layers, parameter_shapes  # plain arithmetic

    if len(structure["widths"]) != 1 + 2 * config.blocks:
        raise FileFormatError(f"{len(structure['widths'])} layer widths for {config.blocks} blocks")
    try:
        widths = check_widths(config, structure["widths"])
    except ValueError as exc:
        raise FileFormatError(f"the stored layer widths do not fit the settings ({one_line(exc, 120)})") from None
    shapes = parameter_shapes(config, widths)
    entries = sum(math.prod(s) for s in shapes.values())
    if entries > limit:
        raise _too_large(entries, limit)
    clustered = structure["clustered_layers"]
    if clustered and (config.weight_clusters == 0 or len(set(clustered)) != len(clustered)
                      or not set(clustered) <= set(hidden_layers(config))):
        raise FileFormatError(f"clustered layers {one_line(clustered, 80)} do not fit the settings")
    indices: dict[str, tuple[int, ...]] = {}
    for k in sorted(clustered):  # a clustered matrix: shared values (fp16, with the weights) and uint8 indices
        name = f"layers.{k}.linear"
        indices[f"{name}.indices"] = shapes.pop(f"{name}.weight")
        shapes[f"{name}.codebook"] = (config.weight_clusters,)
    weights = sum(math.prod(s) for s in shapes.values())
    specs = {WEIGHTS: TensorSpec(FLOAT16, (weights,))}
    if indices:
        specs[WEIGHT_INDICES] = TensorSpec(UINT8, (sum(math.prod(s) for s in indices.values()),))
    return TensorPlan(specs, shapes, indices, weights + sum(math.prod(s) for s in indices.values()))
